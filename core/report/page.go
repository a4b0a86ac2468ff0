package report

import "html/template"

// chartStyle styles the SVG of a chart, in the page and in a standalone chart file.
const chartStyle = `svg.chart rect.plot { fill: #fff; stroke: #bbb; }
svg.chart line.grid { stroke: #eee; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #555; }
svg.chart polyline.series { fill: none; stroke-width: 1.8; }
svg.chart polygon.band { opacity: 0.15; stroke: none; }`

// tmpl is the page. Its script only filters the completions table; the charts are
// plain SVG and show without it.
var tmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rlif report · {{.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; padding: 0 1.5em 3em; max-width: 1700px; color: #222; background: #fff; }
h1 { font-size: 1.5em; margin: 0.8em 0 0.2em; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.5em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #666; }
.runs span.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; vertical-align: -0.1em; margin-right: 0.3em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: 14px; }
figure { margin: 0; padding: 8px; border: 1px solid #e3e3e3; border-radius: 6px; background: #fcfcfc; }
figcaption { font-weight: 600; margin-bottom: 4px; font-family: ui-monospace, monospace; font-size: 13px; }
svg.chart { width: 100%; height: auto; display: block; }
{{.ChartStyle}}
.legend { font-size: 12px; color: #444; }
.legend .item { margin-right: 1em; white-space: nowrap; }
.legend svg { vertical-align: middle; margin-right: 0.3em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; vertical-align: top; text-align: left; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td pre { margin: 0; white-space: pre-wrap; word-break: break-word; max-height: 14em; overflow: auto; max-width: 60em; font-size: 12px; }
td.prompt pre { max-width: 24em; }
details pre { background: #f6f6f6; padding: 0.6em; overflow: auto; }
.controls { margin: 0.5em 0; }
img.hist { max-width: 640px; width: 100%; }
</style>
</head>
<body>
<h1>rlif report</h1>
<p class="meta">{{len .Runs}} run{{if gt (len .Runs) 1}}s{{end}} · generated {{.Generated}}</p>
<ul class="runs">
{{- range .Runs}}
<li><span class="swatch" style="background: {{.Color}}"></span><b>{{.Name}}</b> ({{.Dir}}) · {{.Steps}} step{{if ne .Steps 1}}s{{end}}{{if .Steps}}, last step {{.LastStep}}{{end}}
{{- if .Config}}<details><summary>config.toml</summary><pre>{{.Config}}</pre></details>{{end}}</li>
{{- end}}
</ul>
{{- range .Sections}}
<h2>{{.Title}}</h2>
<div class="grid">
{{- range .Charts}}
<figure data-chart="{{.ID}}"><figcaption>{{.Title}}</figcaption>{{.SVG}}<div class="legend">{{.Legend}}</div></figure>
{{- end}}
</div>
{{- else}}
<p>No metrics yet: the runs have not finished a step.</p>
{{- end}}
{{- if .Evals}}
<h2>Evaluations</h2>
<table id="evals">
<tr><th>run</th><th>model</th><th>data</th><th>items</th><th>completions</th><th>accuracy [95% CI]</th><th>pass@k · maj@k</th><th>extractable</th><th>cut at max tokens</th><th>self-certainty calibration</th></tr>
{{- range .Evals}}
<tr><td>{{.Run}}</td><td>{{.Label}}</td><td>{{.Data}}</td><td class="num">{{.Items}}</td><td class="num">{{.Completions}}</td><td class="num">{{.Accuracy}} [{{.Low}}, {{.High}}]</td><td>{{.PassMaj}}</td><td class="num">{{.Extractable}}</td><td class="num">{{.Truncated}}</td><td>{{.Calibration}}</td></tr>
{{- end}}
</table>
{{- range .Evals}}{{if .Histogram}}
<figure><figcaption>{{.Run}} · {{.Label}} on {{.Data}}: calibration histogram</figcaption><img class="hist" alt="calibration histogram" src="{{.Histogram}}"></figure>
{{- end}}{{end}}
{{- end}}
<h2>Completions</h2>
{{- if .Rows}}
<p class="meta">{{.Shown}} of {{.Total}} completions{{if lt .Shown .Total}} (whole steps spread over each run; rlif report --max-completions shows more){{end}}.</p>
<div class="controls">
<label>step <select id="step-filter"><option value="">all</option>{{range .Steps}}<option value="{{.}}">{{.}}</option>{{end}}</select></label>
{{if gt (len .Runs) 1}}<label>run <select id="run-filter"><option value="">all</option>{{range .Runs}}<option value="{{.Name}}">{{.Name}}</option>{{end}}</select></label>{{end}}
<span id="row-count"></span>
</div>
<table id="completions">
<thead><tr><th>run</th><th>step</th><th>group</th><th>prompt</th><th>completion</th><th>tokens</th><th>finish</th>{{range .Rewards}}<th>{{.}}</th>{{end}}<th>advantage</th><th>self-certainty</th></tr></thead>
<tbody>
{{- range .Rows}}
<tr data-step="{{.Step}}" data-run="{{.Run}}"><td style="border-left: 4px solid {{.Color}}">{{.Run}}</td><td class="num">{{.Step}}</td><td class="num">{{.Group}}</td><td class="prompt"><pre>{{.Prompt}}</pre></td><td><pre>{{.Completion}}</pre></td><td class="num">{{.Tokens}}</td><td>{{.Finish}}</td>{{range .Scores}}<td class="num">{{.}}</td>{{end}}<td class="num">{{.Advantage}}</td><td class="num">{{.SelfCert}}</td></tr>
{{- end}}
</tbody>
</table>
<script>
(function () {
  var step = document.getElementById("step-filter");
  var run = document.getElementById("run-filter");
  var count = document.getElementById("row-count");
  var rows = document.querySelectorAll("#completions tbody tr");
  function apply() {
    var n = 0;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      var show = (!step.value || r.dataset.step === step.value) && (!run || !run.value || r.dataset.run === run.value);
      r.style.display = show ? "" : "none";
      if (show) n++;
    }
    count.textContent = n + " shown";
  }
  step.addEventListener("change", apply);
  if (run) run.addEventListener("change", apply);
  apply();
})();
</script>
{{- else}}
<p>No completions recorded (output.completions_every in the run's config sets how often they are).</p>
{{- end}}
</body>
</html>
`))
