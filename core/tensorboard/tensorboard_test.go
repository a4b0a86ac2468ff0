package tensorboard

import (
	"bytes"
	"errors"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCRC32CIsCastagnoli(t *testing.T) {
	// The check value of CRC-32C (iSCSI) over "123456789".
	if got := crc32.Checksum([]byte("123456789"), castagnoli); got != 0xe3069283 {
		t.Fatalf("crc32c = %08x, want e3069283", got)
	}
	c := uint32(0xe3069283)
	if got, want := maskedCRC([]byte("123456789")), (c>>15|c<<17)+0xa282ead8; got != want {
		t.Fatalf("masked = %08x, want %08x", got, want)
	}
}

func TestWriteReadBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tb")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 250_000_000)
	steps := []map[string]float64{
		{"loss": 0.5, "reward/accuracy/mean": 0.25, "kl": 1e-4},
		{"loss": -0.125, "reward/accuracy/mean": 0.75, "kl": math.NaN()},
	}
	for i, s := range steps {
		if err := w.Scalars(i+1, at.Add(time.Duration(i)*time.Second), s); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(w.Path()), "events.out.tfevents.") {
		t.Errorf("file name %s: TensorBoard looks for events.out.tfevents.*", w.Path())
	}
	b, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	evs, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[0].FileVersion != FileVersion {
		t.Fatalf("%d events (first %+v): want the file version and 2 steps", len(evs), evs[0])
	}
	for i, s := range steps {
		e := evs[i+1]
		if e.Step != int64(i+1) || math.Abs(e.WallTime-(1700000000.25+float64(i))) > 1e-6 {
			t.Errorf("event %d: step %d wall %f", i+1, e.Step, e.WallTime)
		}
		for k, v := range s {
			got, ok := e.Scalars[k]
			if math.IsNaN(v) {
				if ok {
					t.Errorf("step %d: NaN %s written", i+1, k)
				}
				continue
			}
			if !ok || got != float32(v) {
				t.Errorf("step %d: %s = %v (present %v), want %v", i+1, k, got, ok, v)
			}
		}
	}

	// A flipped byte in a record fails its CRC; a cut file reads as truncated.
	bad := append([]byte(nil), b...)
	bad[len(bad)-10] ^= 0x40
	if _, err := Read(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "data CRC") {
		t.Errorf("corrupt record: %v, want a data CRC error", err)
	}
	bad = append([]byte(nil), b...)
	bad[3] ^= 1
	if _, err := Read(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "length CRC") {
		t.Errorf("corrupt length: %v, want a length CRC error", err)
	}
	evs, err = Read(bytes.NewReader(b[:len(b)-3]))
	if !errors.Is(err, ErrTruncated) || len(evs) != 2 {
		t.Errorf("cut file: %d events, %v; want 2 and ErrTruncated", len(evs), err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(record(Event{WallTime: 1, Step: 3, Scalars: map[string]float32{"a": 1}}.marshal()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		// What reads back whole re-encodes to a file that reads back the same.
		var again []byte
		for _, e := range evs {
			again = append(again, record(e.marshal())...)
		}
		evs2, err := Read(bytes.NewReader(again))
		if err != nil || len(evs2) != len(evs) {
			t.Fatalf("re-read: %d events, %v; want %d", len(evs2), err, len(evs))
		}
	})
}

// A resume in the same process and the same second must not collide with the first
// file (CI saw "file exists" from a test that resumes a run at once).
func TestCreateTwiceInOneSecond(t *testing.T) {
	dir := t.TempDir()
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		w, err := Create(dir)
		if err != nil {
			t.Fatalf("Create #%d: %v", i+1, err)
		}
		if seen[w.Path()] {
			t.Fatalf("Create #%d reused %s", i+1, w.Path())
		}
		seen[w.Path()] = true
		if !strings.Contains(filepath.Base(w.Path()), "tfevents") {
			t.Errorf("%s: TensorBoard reads only files named *tfevents*", w.Path())
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Rewind keeps each file's events up to the step and drops the rest, a record cut short
// by a kill included; a file left with no step goes.
func TestRewind(t *testing.T) {
	dir := t.TempDir()
	write := func(steps ...int) string {
		w, err := Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range steps {
			if err := w.Scalars(s, time.Now(), map[string]float64{"loss": float64(s)}); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
		return w.Path()
	}
	first := write(1, 2, 3, 4)
	f, _ := os.OpenFile(first, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(record([]byte("cut"))[:9]) // a torn record, as a kill leaves it
	f.Close()
	later := write(5, 6)
	if err := Rewind(dir, 3); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("rewound file: %v", err)
	}
	var got []int64
	for _, e := range evs[1:] {
		got = append(got, e.Step)
	}
	if evs[0].FileVersion != FileVersion || len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("steps after Rewind(3): %v (first event %+v)", got, evs[0])
	}
	if _, err := os.Stat(later); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file of steps 5-6 survived Rewind(3): %v", err)
	}
	if err := Rewind(filepath.Join(dir, "none"), 1); err != nil {
		t.Fatalf("no directory: %v", err)
	}
}
