#!/usr/bin/env bash
# Bad-input sweep of issue 22, tried as a new user would, on bin/rlif (needs root for the
# read-only mount case; prints one row per case, see the closing note of issue 22). Each case runs in a
# fresh directory; a case prints: name, exit code, seconds, stderr line count, the last
# stderr line, and "LOST" when a file it planted changed or vanished.
cd "$(dirname "$0")/.."
RLIF=${RLIF:-$PWD/bin/rlif}
REPO=$PWD
S=$(realpath ../shared/models/stories260K.gguf)
ROOT=$(mktemp -d /tmp/sweep.XXXX)
results=$ROOT/results.tsv
plant() { mkdir -p "$1"; echo mine > "$1/notes.md"; mkdir -p "$1/docs"; echo years > "$1/docs/thesis.txt"; }
planted_ok() { [ "$(cat "$1/notes.md" 2>/dev/null)" = mine ] && [ "$(cat "$1/docs/thesis.txt" 2>/dev/null)" = years ]; }
tiny_cfg() { cat > "$1" <<CFG
model = "$S"
steps = 1
[data]
raw = true
path = "$2"
[sampling]
prompts_per_step = 2
group_size = 2
max_tokens = 8
threads = 1
[learner]
threads = 1
[sync]
precision = "f32"
CFG
}
case_run() { # name, dir, timeout, cmd...
  local name=$1 dir=$2 to=$3; shift 3
  local t0=$(date +%s.%N)
  (cd "$dir" && timeout -k 5 "$to" "$@" >"$dir/.out" 2>"$dir/.err"); local rc=$?
  local t1=$(date +%s.%N)
  local n=$(grep -c . "$dir/.err" 2>/dev/null)
  local last=$(grep . "$dir/.err" | tail -1 | cut -c1-400)
  [ -z "$last" ] && last="(stdout) $(tail -1 "$dir/.out" | cut -c1-300)"
  local lost=""
  [ -f "$dir/.planted" ] && ! planted_ok "$(cat "$dir/.planted")" && lost=LOST
  printf '%s\t%s\t%.1f\t%s\t%s\t%s\n' "$name" "$rc" "$(echo "$t1 - $t0" | bc)" "$n" "$lost" "$last" | tee -a "$results"
}
new() { local d=$ROOT/$1; mkdir -p "$d"; printf '{"prompt": "Once upon a time"}\n{"prompt": "The cat"}\n{"prompt": "Lily saw"}\n' > "$d/d.jsonl"; tiny_cfg "$d/base.toml" "$d/d.jsonl"; echo "$d"; }

# --- the issue's cases ---
d=$(new overwrite-home); plant $d/home; echo 'x = 1' > $d/home/config.toml; mkdir -p $d/home/.ssh; echo key > $d/home/.ssh/id_rsa; echo $d/home > $d/.planted
case_run overwrite-home $d 120 $RLIF train --config base.toml --out home --overwrite --steps 1
d=$(new overwrite-dot); mkdir -p $d/proj; plant $d/proj; echo 'x = 1' > $d/proj/config.toml; cp $d/d.jsonl $d/base.toml $d/proj/; echo $d/proj > $d/.planted
case_run overwrite-dot $d/proj 120 $RLIF train --config base.toml --out . --overwrite
d=$(new nonempty-no-overwrite); plant $d/home; echo 'x = 1' > $d/home/config.toml; echo $d/home > $d/.planted
case_run nonempty-no-overwrite $d 120 $RLIF train --config base.toml --out home
d=$(new eval-out-twice); printf '{"prompt": "Once", "answer": "1"}\n' > $d/e.jsonl
(cd $d && $RLIF eval --model $S --raw --data e.jsonl --max-tokens 4 --threads 1 --out ev >/dev/null 2>&1); cp $d/ev/summary.json $d/first.json
case_run eval-out-twice $d 120 $RLIF eval --model $S --raw --data e.jsonl --max-tokens 4 --threads 1 --out ev
cmp -s $d/ev/summary.json $d/first.json || echo "eval-out-twice: summary replaced" | tee -a $results
d=$(new eval-out-userdir); plant $d/mine; echo $d/mine > $d/.planted; printf '{"prompt": "Once", "answer": "1"}\n' > $d/e.jsonl
case_run eval-out-userdir $d 120 $RLIF eval --model $S --raw --data e.jsonl --max-tokens 4 --threads 1 --out mine
d=$(new no-manifest); (cd $d && $RLIF train --config base.toml --out run --steps 2 >/dev/null 2>&1); rm -rf $d/run/final; rm $d/run/checkpoints/step-2/manifest.json
case_run no-manifest $d 180 $RLIF train --resume run
d=$(new relative-resume); mkdir -p $d/cfg $d/models $d/elsewhere; cp $S $d/models/s.gguf; cp $d/d.jsonl $d/cfg/; sed -e "s|^model = .*|model = \"../models/s.gguf\"\nout = \"../runs/base\"|" -e 's|^path = .*|path = "d.jsonl"|' -e 's/\[learner\]/[learner]\nschedule = "constant"/' $d/base.toml > $d/cfg/run.toml
(cd $d && $RLIF train --config cfg/run.toml >/dev/null 2>&1); rm -rf $d/runs/base/final
case_run relative-resume $d/elsewhere 180 $RLIF train --resume ../runs/base --steps 2
case_run relative-config-again $d/runs/base 180 $RLIF train --config config.toml --out ../again
case_run relative-export $d/elsewhere 180 $RLIF export ../runs/base/checkpoints/step-1 --hf hf
d=$(new plugin-relative); mkdir -p $d/cfg; cp $REPO/examples/plugins/python-keyword/plugin.py $d/cfg/ok2.py; chmod +x $d/cfg/ok2.py; cp $d/d.jsonl $d/cfg/
{ cat $d/base.toml; printf '[[rewards]]\nname = "self_certainty"\n[[rewards]]\nname = "kw"\nplugin = "ok2.py"\nargs = { keywords = ["the"] }\nenv = { PYTHONPATH = "$REPO/plugins/sdk/python" }\n'; } > $d/cfg/p.toml
case_run plugin-relative-outside $d 180 $RLIF train --config cfg/p.toml --out run1
case_run plugin-relative-inside $d/cfg 180 $RLIF train --config p.toml --out ../run2
d=$(new port-held); python3 -c "import socket,time;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('127.0.0.1',29577));s.listen();time.sleep(60)" & hp=$!; sleep 1
case_run port-held-rank1 $d 120 env WORLD_SIZE=2 RANK=1 LOCAL_RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29577 $RLIF train --config base.toml --out run --dist-timeout 5s
kill $hp 2>/dev/null
d=$(new lone-rank)
case_run lone-rank $d 120 env WORLD_SIZE=2 RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29578 $RLIF train --config base.toml --out run --dist-timeout 5s
d=$(new nproc64)
case_run nproc64 $d 120 $RLIF train --config base.toml --out run --nproc 64
d=$(new hfdir); (cd $d && $RLIF export $S --hf hf --dtype f32 >/dev/null 2>&1)
cp -r $d/hf $d/zero; rm $d/zero/config.json; ln -s /dev/zero $d/zero/config.json
case_run hf-devzero-config $d 60 $RLIF convert zero z.gguf --raw
mkfifo $d/fifo.gguf
case_run fifo-model $d 60 $RLIF sample --model fifo.gguf --raw --prompt hi
cp -r $d/hf $d/contra; python3 - $d/contra/config.json <<'PY'
import json,sys; p=sys.argv[1]; c=json.load(open(p)); c["hidden_size"]=128; json.dump(c,open(p,"w"))
PY
case_run hf-config-contradicts $d 60 $RLIF convert contra c.gguf --raw
cp -r $d/hf $d/kvneg; python3 - $d/kvneg/config.json <<'PY'
import json,sys; p=sys.argv[1]; c=json.load(open(p)); c["num_key_value_heads"]=-1; json.dump(c,open(p,"w"))
PY
case_run hf-negative-kv-heads $d 60 $RLIF convert kvneg c2.gguf --raw
cp -r $d/hf $d/nan; python3 - $d/nan/model.safetensors <<'PY'
import json,struct,sys
p=sys.argv[1]; b=bytearray(open(p,'rb').read()); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n])
name=[k for k in h if k!='__metadata__'][0]; off=8+n+h[name]['data_offsets'][0]
b[off:off+4]=struct.pack('<f',float('nan')); open(p,'wb').write(b)
PY
case_run hf-nan-weights $d 60 $RLIF convert nan n.gguf --raw
cp -r $d/hf $d/tmplink; echo secret > $d/secret.txt; rm -f $d/tmplink/chat_template.jinja; ln -s $d/secret.txt $d/tmplink/chat_template.jinja
case_run hf-template-link-outside $d 60 $RLIF convert tmplink t.gguf
cp -r $d/hf $d/dangling; rm $d/dangling/model.safetensors; ln -s $d/gone.safetensors $d/dangling/model.safetensors
case_run hf-dangling-weights $d 60 $RLIF convert dangling d.gguf --raw
mkdir -p $d/outdir
case_run convert-onto-directory $d 60 $RLIF convert hf outdir --raw
mkdir -p $d/ro; mount -t tmpfs -o ro,size=1m tmpfs $d/ro 2>/dev/null
case_run export-readonly-mount $d 60 $RLIF export $S --hf ro
umount $d/ro 2>/dev/null
d=$(new lr-huge); sed -i 's/\[learner\]/[learner]\nlr = 1e30\nwarmup_ratio = 0\nmax_grad_norm = 0/' $d/base.toml
case_run lr-1e30 $d 180 $RLIF train --config base.toml --out run --steps 3
d=$(new weight-zero); printf '[[rewards]]\nname = "self_certainty"\nweight = 0\n' >> $d/base.toml
case_run weight-zero $d 60 $RLIF train --config base.toml --out run
d=$(new seed-neg); sed -i 's/^steps = 1/steps = 1\nseed = -1/' $d/base.toml
case_run seed-negative $d 60 $RLIF train --config base.toml --out run
d=$(new prompt-number); printf '{"prompt": 12345}\n{"prompt": "ok"}\n' > $d/d.jsonl
case_run prompt-number $d 60 $RLIF train --config base.toml --out run
d=$(new score-missing); printf '[[rewards]]\nname = "format"\n' > $d/s.toml; printf '{"completion": "x"}\n' > $d/c.jsonl
case_run score-no-prompt $d 60 $RLIF score --config s.toml --completions c.jsonl
d=$(new sample-nan); python3 - $S $d/nan.gguf <<'PY'
import sys; b=bytearray(open(sys.argv[1],'rb').read()); import struct
for i in range(len(b)-4000, len(b)-4, 4): b[i:i+4]=struct.pack('<f', float('nan'))
open(sys.argv[2],'wb').write(b)
PY
case_run sample-nan-model $d 60 $RLIF sample --model nan.gguf --raw --prompt "Once upon a time"
d=$(new report-truncated); (cd $d && $RLIF train --config base.toml --out run --steps 2 >/dev/null 2>&1); printf '{"step": 3, "loss": 0.' >> $d/run/metrics.jsonl
case_run report-truncated-line $d 60 $RLIF report run --out r.html
d=$(new steps-absurd); sed -i 's/^steps = 1/steps = 1000000000000/' $d/base.toml
case_run steps-absurd $d 30 $RLIF train --config base.toml --out run
d=$(new bom); printf '\xef\xbb\xbf{"prompt": "Once upon a time"}\n{"prompt": "The cat"}\n' > $d/d.jsonl
case_run jsonl-bom $d 120 $RLIF train --config base.toml --out run
d=$(new data-dir); mkdir -p $d/datadir
case_run data-is-directory $d 60 $RLIF train --config base.toml --data datadir --out run
d=$(new no-shebang); printf 'print("hi")\n' > $d/ok.py; chmod +x $d/ok.py; printf '[[rewards]]\nname = "mine"\nplugin = "ok.py"\n' >> $d/base.toml
case_run plugin-no-shebang $d 60 $RLIF train --config base.toml --out run
ls -A $d/run 2>/dev/null | sed 's/^/    left in run: /' | tee -a $results
d=$(new refused-leaves); printf '[[rewards]]\nname = "gone"\nplugin = "/nonexistent/plugin"\n' >> $d/base.toml
case_run refused-run-leaves-nothing $d 60 $RLIF train --config base.toml --out run
[ -e $d/run ] && echo "refused-run-leaves-nothing: run/ exists: $(ls -A $d/run)" | tee -a $results

# --- 30+ new cases ---
d=$(new n1); case_run config-missing $d 30 $RLIF train --config nope.toml
d=$(new n2); mkdir $d/cdir; case_run config-is-dir $d 30 $RLIF train --config cdir
d=$(new n3); echo 'stepz = 3' >> $d/base.toml; case_run config-unknown-key $d 30 $RLIF train --config base.toml --out run
d=$(new n4); sed -i 's/^steps = 1/steps = "ten"/' $d/base.toml; case_run config-wrong-type $d 30 $RLIF train --config base.toml --out run
d=$(new n5); case_run steps-negative $d 30 $RLIF train --config base.toml --steps -1 --out run
d=$(new n6); case_run model-missing $d 30 $RLIF train --config base.toml --model nope.gguf --out run
d=$(new n7); echo "hello" > $d/t.gguf; case_run model-text-file $d 30 $RLIF train --config base.toml --model t.gguf --out run
d=$(new n8); : > $d/e.gguf; case_run model-empty-file $d 30 $RLIF sample --model e.gguf --prompt hi --raw
d=$(new n9); : > $d/d.jsonl; case_run data-empty $d 30 $RLIF train --config base.toml --out run
d=$(new n10); printf '{"prompt": "a"}\n{oops\n' > $d/d.jsonl; case_run data-bad-json-line $d 30 $RLIF train --config base.toml --out run
d=$(new n11); printf '{"text": "a"}\n' > $d/d.jsonl; case_run data-no-prompt-field $d 30 $RLIF train --config base.toml --out run
d=$(new n12); echo garbage > $d/x.parquet; case_run data-bad-parquet $d 30 $RLIF train --config base.toml --data x.parquet --out run
d=$(new n13); case_run reward-unknown $d 30 $RLIF train --config base.toml --rewards no_such --out run
d=$(new n14); sed -i 's/group_size = 2/group_size = 1/' $d/base.toml; case_run group-size-1 $d 60 $RLIF train --config base.toml --out run
d=$(new n15); sed -i 's/\[sampling\]/[sampling]\ntemperature = -1.0/' $d/base.toml; case_run temperature-negative $d 30 $RLIF train --config base.toml --out run
d=$(new n16); sed -i 's/max_tokens = 8/max_tokens = 0/' $d/base.toml; case_run max-tokens-0 $d 30 $RLIF train --config base.toml --out run
d=$(new n17); sed -i 's/prompts_per_step = 2/prompts_per_step = 1000000000/' $d/base.toml; case_run prompts-per-step-1e9 $d 60 $RLIF train --config base.toml --out run
d=$(new n18); case_run resume-missing-dir $d 30 $RLIF train --resume nope
d=$(new n19); case_run resume-and-overwrite $d 30 $RLIF train --resume run --overwrite
d=$(new n20); case_run eval-model-missing $d 30 $RLIF eval --model nope.gguf --data d.jsonl
d=$(new n21); case_run eval-data-missing $d 30 $RLIF eval --model $S --data nope.jsonl --raw
d=$(new n22); case_run eval-limit-negative $d 30 $RLIF eval --model $S --data d.jsonl --raw --limit -5
d=$(new n23); case_run sample-empty-prompt $d 30 $RLIF sample --model $S --raw --prompt "" --max-tokens 4
d=$(new n24); case_run sample-n-0 $d 30 $RLIF sample --model $S --raw --prompt hi --n 0
d=$(new n25); printf '[[rewards]]\nname = "format"\n' > $d/s.toml; case_run score-completions-missing $d 30 $RLIF score --config s.toml --completions nope.jsonl
d=$(new n26); case_run report-missing-dir $d 30 $RLIF report nope
d=$(new n27); mkdir $d/empty; case_run report-empty-dir $d 30 $RLIF report empty
d=$(new n28); plant $d/hfout; echo $d/hfout > $d/.planted; case_run export-nonempty-dir $d 30 $RLIF export $S --hf hfout
d=$(new n29); mkdir $d/nocfg; case_run convert-no-config $d 30 $RLIF convert nocfg o.gguf
d=$(new n30); echo keep > $d/o.gguf; mkdir -p $d/h; (cd $d && $RLIF export $S --hf h2 >/dev/null 2>&1); case_run convert-onto-existing-file $d 60 $RLIF convert h2 o.gguf --raw
[ "$(cat $d/o.gguf)" = keep ] || echo "convert-onto-existing-file: o.gguf replaced" | tee -a $results
d=$(new n31); echo file > $d/f.txt; case_run out-through-file $d 30 $RLIF train --config base.toml --out f.txt/run
d=$(new n32); case_run unknown-subcommand $d 30 $RLIF trian
d=$(new n33); case_run nproc-0 $d 30 $RLIF train --config base.toml --nproc 0
d=$(new n34); sed -i 's/\[data\]/[data]\nlimit = -1/' $d/base.toml; case_run data-limit-negative $d 30 $RLIF train --config base.toml --out run
d=$(new n35); printf '[eval]\nevery = 2\n' >> $d/base.toml; case_run eval-every-no-data $d 30 $RLIF train --config base.toml --out run
d=$(new n36); echo '[sampling' >> $d/base.toml; case_run toml-syntax-error $d 30 $RLIF train --config base.toml --out run
d=$(new n37); printf '[[rewards]]\nname = "t"\nplugin = "/bin/true"\n' >> $d/base.toml; case_run plugin-not-grpc $d 60 $RLIF train --config base.toml --out run
d=$(new n38); sed -i 's/\[sampling\]/[sampling]\nstop = [""]/' $d/base.toml; case_run stop-empty-string $d 60 $RLIF train --config base.toml --out run
d=$(new n39); printf '{"prompt": "a\\u0000b \\udcff"}\n{"prompt": "ok"}\n' > $d/d.jsonl; case_run prompt-nul-lone-surrogate $d 120 $RLIF train --config base.toml --out run
d=$(new n40); case_run export-gguf-as-run-dir $d 30 $RLIF export $d --hf out
d=$(new n41); sed -i 's/\[learner\]/[learner]\nloss = "ppo"/' $d/base.toml; case_run loss-unknown $d 30 $RLIF train --config base.toml --out run
d=$(new n42); case_run sample-temperature-nan $d 30 $RLIF sample --model $S --raw --prompt hi --temperature NaN
echo "results in $results"
