package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
)

func TestCheckStories(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"check", "--model", testutil.StoriesModel(t), "--json", "--tolerance", "1e-4", "--threads", "2"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep checkReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rep.Arch != "llama" || rep.Params != 292800 || rep.Vocab != 512 || !rep.OK || rep.Tokens < 200 || rep.SourceType != "f32" {
		t.Errorf("report %+v", rep)
	}
	if rep.Gap.Max() > 1e-4 || rep.GapAfterReload.Max() > 1e-4 {
		t.Errorf("parity gaps %+v / %+v", rep.Gap, rep.GapAfterReload)
	}
	// bf16 rounds the logits to 8 significant bits: a drift well above f32's, still finite
	if g := rep.GapBF16; !(g.Max() > 1e-4 && g.Max() < 1) {
		t.Errorf("bf16 parity gap %+v: want between 1e-4 and 1", g)
	}
}

func TestCheckErrors(t *testing.T) {
	notModel := filepath.Join(t.TempDir(), "notes.gguf")
	if err := os.WriteFile(notModel, []byte("just some text"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"check", "--model", filepath.Join(t.TempDir(), "missing.gguf")}, 1, "no such file"},
		{[]string{"check", "--model", notModel}, 1, "not a valid GGUF"},
		{[]string{"check", "--tokens", "1"}, 2, "--tokens"},
		{[]string{"check", "--tolerance", "-1"}, 2, "--tolerance"},
		{[]string{"check", "extra"}, 2, "unexpected argument"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		msg := errb.String()
		if code != c.code || !strings.Contains(msg, c.want) || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line mentioning %q", c.args, code, msg, c.code, c.want)
		}
	}
}
