// Package tensorboard writes and reads TensorBoard event files: TFRecord framing (length,
// masked CRC32C of the length, the record, masked CRC32C of the record) around Event
// protos whose Summary holds scalar simple_values. This is the part of the format that
// `tensorboard --logdir` needs for scalar charts; the protos are encoded by hand with
// protowire rather than generated, since three messages and five fields are all it takes.
package tensorboard

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rlif/rlif/internal/atomicfile"
	"github.com/rlif/rlif/internal/num"
)

// FileVersion is the first event of every file; TensorBoard checks it.
const FileVersion = "brain.Event:2"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC is TFRecord's checksum: CRC32C rotated right by 15 bits plus a constant, so
// that a CRC of data holding CRCs does not degenerate.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// Field numbers of tensorflow.Event, Summary and Summary.Value.
const (
	eventWallTime    = 1 // double
	eventStep        = 2 // int64
	eventFileVersion = 3 // string
	eventSummary     = 5 // Summary
	summaryValue     = 1 // repeated Value
	valueTag         = 1 // string
	valueSimple      = 2 // float
)

// Event is one record of an event file: the file version (first record only) or a step's
// scalars.
type Event struct {
	WallTime    float64
	Step        int64
	FileVersion string
	Scalars     map[string]float32
}

func (e Event) marshal() []byte {
	var b []byte
	b = protowire.AppendTag(b, eventWallTime, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, math.Float64bits(e.WallTime))
	if e.Step != 0 {
		b = protowire.AppendTag(b, eventStep, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(e.Step))
	}
	if e.FileVersion != "" {
		b = protowire.AppendTag(b, eventFileVersion, protowire.BytesType)
		b = protowire.AppendString(b, e.FileVersion)
	}
	if len(e.Scalars) > 0 {
		tags := make([]string, 0, len(e.Scalars))
		for t := range e.Scalars {
			tags = append(tags, t)
		}
		sort.Strings(tags)
		var sum []byte
		for _, t := range tags {
			var v []byte
			v = protowire.AppendTag(v, valueTag, protowire.BytesType)
			v = protowire.AppendString(v, t)
			v = protowire.AppendTag(v, valueSimple, protowire.Fixed32Type)
			v = protowire.AppendFixed32(v, math.Float32bits(e.Scalars[t]))
			sum = protowire.AppendTag(sum, summaryValue, protowire.BytesType)
			sum = protowire.AppendBytes(sum, v)
		}
		b = protowire.AppendTag(b, eventSummary, protowire.BytesType)
		b = protowire.AppendBytes(b, sum)
	}
	return b
}

// record frames data as one TFRecord.
func record(data []byte) []byte {
	out := make([]byte, 12, 12+len(data)+4)
	binary.LittleEndian.PutUint64(out, uint64(len(data)))
	binary.LittleEndian.PutUint32(out[8:], maskedCRC(out[:8]))
	out = append(out, data...)
	return binary.LittleEndian.AppendUint32(out, maskedCRC(data))
}

// Writer appends events to one event file.
type Writer struct {
	f    *os.File
	path string
}

// Create starts a new event file in dir (created if needed), named as TensorBoard
// expects (events.out.tfevents.TIME.HOST.PID, so that restarts of a run each add a file
// and never overwrite one), and writes its file-version event.
func Create(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tensorboard: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	now := time.Now()
	base := filepath.Join(dir, fmt.Sprintf("events.out.tfevents.%d.%s.%d", now.Unix(), host, os.Getpid()))
	// A run resumed by the same process within the same second (a test, a retry loop)
	// gets the same base name; a numeric suffix keeps each file its own. TensorBoard
	// reads every file whose name contains "tfevents".
	path := base
	var f *os.File
	for i := 1; ; i++ {
		f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i > 1000 {
			return nil, fmt.Errorf("tensorboard: %w", err)
		}
		path = fmt.Sprintf("%s.%d", base, i)
	}
	w := &Writer{f: f, path: path}
	if err := w.write(Event{WallTime: seconds(now), FileVersion: FileVersion}); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// Path is the event file's path.
func (w *Writer) Path() string { return w.path }

// Scalars writes one event with the scalars of a step. Non-finite values are left out:
// TensorBoard would draw them as gaps anyway and some readers reject them.
func (w *Writer) Scalars(step int, at time.Time, values map[string]float64) error {
	e := Event{WallTime: seconds(at), Step: int64(step), Scalars: map[string]float32{}}
	for k, v := range values {
		if num.Finite(v) {
			e.Scalars[k] = float32(v)
		}
	}
	return w.write(e)
}

func (w *Writer) write(e Event) error {
	// One write per record: a reader sees whole records or a short tail it ignores.
	if _, err := w.f.Write(record(e.marshal())); err != nil {
		return fmt.Errorf("tensorboard %s: %w", w.path, err)
	}
	return nil
}

// Close closes the file.
func (w *Writer) Close() error {
	if w == nil || w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// ErrTruncated reports a file that ends inside a record (a writer still busy, or killed).
var ErrTruncated = errors.New("event file ends inside a record")

// Read parses every record of an event file, checking both CRCs of each.
func Read(r io.Reader) ([]Event, error) {
	var out []Event
	err := scan(r, func(_ []byte, e Event) { out = append(out, e) })
	return out, err
}

// scan calls f with each record of an event file (its whole framed bytes) and its event,
// in order, until the end of the file or the first damaged record.
func scan(r io.Reader, f func(raw []byte, e Event)) error {
	head := make([]byte, 12)
	for n := 1; ; n++ {
		if _, err := io.ReadFull(r, head); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("record %d: %w", n, ErrTruncated)
		}
		if got, want := binary.LittleEndian.Uint32(head[8:]), maskedCRC(head[:8]); got != want {
			return fmt.Errorf("record %d: length CRC %08x, want %08x", n, got, want)
		}
		size := binary.LittleEndian.Uint64(head)
		if size > 1<<30 {
			return fmt.Errorf("record %d: length %d is implausible", n, size)
		}
		raw := make([]byte, 12+size+4)
		copy(raw, head)
		body := raw[12:]
		if _, err := io.ReadFull(r, body); err != nil {
			return fmt.Errorf("record %d: %w", n, ErrTruncated)
		}
		data := body[:size]
		if got, want := binary.LittleEndian.Uint32(body[size:]), maskedCRC(data); got != want {
			return fmt.Errorf("record %d: data CRC %08x, want %08x", n, got, want)
		}
		e, err := parseEvent(data)
		if err != nil {
			return fmt.Errorf("record %d: %w", n, err)
		}
		f(raw, e)
	}
}

// Rewind removes the events of steps after step from every event file in dir, for a run
// resumed from the checkpoint of that step: the steps it does again are then written once,
// with the values of the resumed run (TensorBoard would otherwise draw both, and readers
// such as pandas' exports keep both). A record cut short by a kill goes too; a file left
// with no step is removed.
func Rewind(dir string, step int) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tensorboard: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.Contains(e.Name(), "tfevents") || atomicfile.IsTemp(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := rewindFile(p, step); err != nil {
			return fmt.Errorf("tensorboard %s: %w", p, err)
		}
	}
	return nil
}

func rewindFile(p string, step int) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	var keep []byte
	steps, dropped := 0, false
	serr := scan(bufio.NewReader(f), func(raw []byte, e Event) {
		if e.Step > int64(step) {
			dropped = true
			return
		}
		if e.FileVersion == "" {
			steps++
		}
		keep = append(keep, raw...)
	})
	f.Close()
	if serr != nil && !errors.Is(serr, ErrTruncated) {
		return serr
	}
	switch {
	case steps == 0:
		return os.Remove(p)
	case dropped || serr != nil:
		return atomicfile.WriteFile(p, keep)
	}
	return nil
}

// fields calls f for every field of a protobuf message.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		if err := f(num, typ, b[:m]); err != nil {
			return err
		}
		b = b[m:]
	}
	return nil
}

func parseEvent(b []byte) (Event, error) {
	var e Event
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case num == eventWallTime && typ == protowire.Fixed64Type:
			x, _ := protowire.ConsumeFixed64(v)
			e.WallTime = math.Float64frombits(x)
		case num == eventStep && typ == protowire.VarintType:
			x, _ := protowire.ConsumeVarint(v)
			e.Step = int64(x)
		case num == eventFileVersion && typ == protowire.BytesType:
			s, _ := protowire.ConsumeString(v)
			e.FileVersion = s
		case num == eventSummary && typ == protowire.BytesType:
			sum, _ := protowire.ConsumeBytes(v)
			e.Scalars = map[string]float32{}
			return fields(sum, func(num protowire.Number, typ protowire.Type, v []byte) error {
				if num != summaryValue || typ != protowire.BytesType {
					return nil
				}
				val, _ := protowire.ConsumeBytes(v)
				var tag string
				var x float32
				simple := false
				if err := fields(val, func(num protowire.Number, typ protowire.Type, v []byte) error {
					switch {
					case num == valueTag && typ == protowire.BytesType:
						tag, _ = protowire.ConsumeString(v)
					case num == valueSimple && typ == protowire.Fixed32Type:
						u, _ := protowire.ConsumeFixed32(v)
						x, simple = math.Float32frombits(u), true
					}
					return nil
				}); err != nil {
					return err
				}
				if simple {
					e.Scalars[tag] = x
				}
				return nil
			})
		}
		return nil
	})
	return e, err
}
