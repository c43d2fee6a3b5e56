package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/dps-conform/dps-conform/tracer"
)

const benchTraceUsage = `Usage:
  dps-conform bench trace [--size MB] [--flows N] [--workers 1,2] [--tshark] [flags]
  dps-conform bench trace --file CAPTURE [flags]

Generates a capture of DPS-like MQTT traffic (deterministic for a --seed:
--flows TCP connections on port 1883, interleaved, each running CONNECT,
SUBSCRIBE and register/poll PUBLISHes with JSON bodies answered 202 then 200;
TCP writes cut inside packets and several packets coalesced in one write),
then decodes it with the tracer (TCP reassembly + MQTT decoding) once per
--workers value, and reports MB/s, MQTT packets/s and peak heap. The number of
packets decoded is checked against the number generated: a mismatch is an
error (exit 3).

For comparison, on the same file: 'cat FILE >/dev/null' (the read ceiling,
page cache warm) and, with --tshark,
'tshark -r FILE -Y mqtt -T fields -e mqtt.msgtype'.
`

// benchTraceFlags are the flags of bench trace.
type benchTraceFlags struct {
	sizeMB       int
	flows        int
	file         string
	keep         bool
	workers      string
	tshark       bool
	tsharkLimit  int
	seed         uint64
	format       string
	dir          string
	samplePeriod time.Duration
	repeat       int
}

// traceRun is the decoding figure of one worker count.
type traceRun struct {
	Workers       int     `json:"workers"`
	GOMAXPROCS    int     `json:"gomaxprocs"`
	Seconds       float64 `json:"seconds"`
	MBps          float64 `json:"mbPerSecond"`
	PacketsPerSec float64 `json:"packetsPerSecond"`
	Packets       int     `json:"mqttPackets"`
	Frames        int     `json:"frames"`
	Conversations int     `json:"conversations"`
	// MQTTConversations are the conversations with at least one MQTT packet.
	MQTTConversations int    `json:"mqttConversations"`
	Problems          int    `json:"problems"`
	Gaps              int    `json:"gaps"`
	PeakHeapBytes     uint64 `json:"peakHeapInuseBytes"`
	// CPUSeconds is the user+system CPU time of the process during the
	// decoding (the heap sampler included); MBPerCPUSecond divides the file
	// size by it, a figure that other processes competing for the cores
	// do not lower.
	CPUSeconds     float64 `json:"cpuSeconds"`
	MBPerCPUSecond float64 `json:"mbPerCPUSecond"`
	// AllSeconds are the times of every repetition (--repeat); the figures
	// above are those of the fastest.
	AllSeconds []float64 `json:"allSeconds"`
}

// toolRun is the figure of an external command on the same file.
type toolRun struct {
	Command string  `json:"command"`
	Bytes   int64   `json:"bytes"` // bytes of the file it read
	Seconds float64 `json:"seconds"`
	MBps    float64 `json:"mbPerSecond"`
	Packets int     `json:"mqttPackets,omitempty"`
	// AllSeconds are the times of every run (tshark runs --repeat times,
	// as the tracer decodes, and the figures are those of the fastest).
	AllSeconds []float64 `json:"allSeconds,omitempty"`
	Skipped    string    `json:"skipped,omitempty"`
	PrefixNote string    `json:"note,omitempty"`
}

// traceBenchResult is the outcome of bench trace.
type traceBenchResult struct {
	File       string         `json:"file"`
	FileBytes  int64          `json:"fileBytes"`
	Generated  *traceGenStats `json:"generated,omitempty"`
	GenSeconds float64        `json:"generateSeconds,omitempty"`
	Runs       []traceRun     `json:"runs"`
	Cat        toolRun        `json:"cat"`
	TShark     *toolRun       `json:"tshark,omitempty"`
	// PrefixRuns are the tracer's runs on tshark's prefix (--tshark-limit),
	// one per worker count: VsTShark then divides their rates, so that
	// both sides read the same bytes.
	PrefixRuns   []traceRun `json:"prefixRuns,omitempty"`
	VsTShark     []float64  `json:"speedupVsTshark,omitempty"` // per worker count
	VmHWMKiB     int64      `json:"vmHWMKiB,omitempty"`
	NumCPU       int        `json:"numCPU"`
	KeptFile     bool       `json:"keptFile"`
	MemoryRemark string     `json:"memoryRemark"`
}

func benchTraceCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("bench trace", benchTraceUsage)
	f := benchTraceFlags{samplePeriod: 5 * time.Millisecond}
	fs.IntVar(&f.sizeMB, "size", 200, "size of the generated capture in `MB` (10^6 bytes)")
	fs.IntVar(&f.flows, "flows", 5000, "`N` TCP connections in the generated capture (1..1000000)")
	fs.StringVar(&f.file, "file", "", "decode this capture `FILE` instead of generating one (no packet-count check)")
	fs.BoolVar(&f.keep, "keep", false, "keep the generated capture (its path is printed)")
	fs.StringVar(&f.workers, "workers", "1,2", "decoding worker counts to measure, a comma-separated `LIST`")
	fs.BoolVar(&f.tshark, "tshark", false, "also time tshark on the file (skipped with a note if tshark is not installed)")
	fs.IntVar(&f.tsharkLimit, "tshark-limit", 0, "run tshark on the first `MB` of the capture only (whole blocks) and report its rate on that prefix; 0: whole file")
	fs.Uint64Var(&f.seed, "seed", 1, "`SEED` of the generated capture")
	fs.StringVar(&f.format, "format", "text", "output `FORMAT`: text or json")
	fs.IntVar(&f.repeat, "repeat", 1, "decode `N` times per worker count, and run tshark N times, and report the fastest of each (all times are in the JSON output)")
	fs.StringVar(&f.dir, "dir", "", "`DIR` for the generated capture; default: the system temporary directory")
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (bench trace takes only flags)", fs.Arg(0))
	}
	format, err := parseBenchFormat(f.format)
	if err != nil {
		return err
	}
	set := flagsSet(fs)
	switch {
	case f.sizeMB < 1 || f.sizeMB > 100_000:
		return usageErrorf("--size %d: want 1..100000 MB", f.sizeMB)
	case f.flows < 1 || f.flows > 1_000_000:
		return usageErrorf("--flows %d: want 1..1000000", f.flows)
	case f.tsharkLimit < 0:
		return usageErrorf("--tshark-limit %d is negative", f.tsharkLimit)
	case f.file != "" && (set["size"] || set["flows"] || set["seed"] || set["keep"] || set["dir"]):
		return usageErrorf("--file decodes an existing capture: --size, --flows, --seed, --keep and --dir apply to a generated one")
	case f.repeat < 1 || f.repeat > 100:
		return usageErrorf("--repeat %d: want 1..100", f.repeat)
	case set["tshark-limit"] && !f.tshark:
		return usageErrorf("--tshark-limit applies only with --tshark")
	}
	workers, err := parseIntList("workers", f.workers, 64)
	if err != nil {
		return err
	}

	res := traceBenchResult{NumCPU: runtime.NumCPU(), File: f.file}
	if f.file == "" {
		dir, err := os.MkdirTemp(f.dir, "dps-conform-bench-trace-")
		if err != nil {
			if f.dir != "" {
				return inputError("--dir", err) // the user's directory: missing is exit 2
			}
			return envErrorf("directory for the capture: %v", err)
		}
		res.File = filepath.Join(dir, "bench.pcapng")
		if !f.keep {
			defer os.RemoveAll(dir)
		}
		res.KeptFile = f.keep
		start := time.Now()
		st, err := generateTraceCapture(res.File, traceGenOptions{Size: int64(f.sizeMB) * 1_000_000, Flows: f.flows, Seed: f.seed})
		if err != nil {
			return envErrorf("generating the capture: %v", err)
		}
		res.GenSeconds = time.Since(start).Seconds()
		res.Generated = &st
	}
	fi, err := os.Stat(res.File)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("--file: %w", err)}
	}
	res.FileBytes = fi.Size()

	// cat first: it also warms the page cache for every reader after it.
	res.Cat = runCat(ctx, res.File, res.FileBytes)

	// check holds a decode of the whole generated file to what the
	// generator wrote.
	check := func(w int, run traceRun) error {
		if g := res.Generated; g != nil && (run.Packets != g.Packets || run.MQTTConversations != g.Flows) {
			return envErrorf("decoding with %d worker(s) found %d MQTT packets in %d conversations carrying MQTT, the generator wrote %d in %d flows: the tracer lost or invented packets",
				w, run.Packets, run.MQTTConversations, g.Packets, g.Flows)
		}
		return nil
	}
	for _, w := range workers {
		run, err := f.bestDecode(ctx, res.File, res.FileBytes, w, func(run traceRun) error { return check(w, run) })
		if err != nil {
			return err
		}
		res.Runs = append(res.Runs, run)
	}

	if f.tshark {
		// tshark reads the file, or with --tshark-limit a prefix of it;
		// the tracer's runs compared with tshark's read the same bytes
		// (the file's runs, or runs on the prefix), or the ratio would
		// compare rates on different traffic.
		tsFile, tsBytes, vs := res.File, res.FileBytes, res.Runs
		var note string
		if limit := int64(f.tsharkLimit) * 1_000_000; limit > 0 && limit < res.FileBytes {
			prefix := res.File + ".prefix"
			n, err := writeCapturePrefix(res.File, prefix, limit)
			if err != nil {
				return envErrorf("cutting the prefix for tshark: %v", err)
			}
			defer os.Remove(prefix)
			tsFile, tsBytes = prefix, n
			for _, w := range workers {
				run, err := f.bestDecode(ctx, prefix, n, w, nil)
				if err != nil {
					return err
				}
				res.PrefixRuns = append(res.PrefixRuns, run)
			}
			vs = res.PrefixRuns
			note = fmt.Sprintf("tshark ran on the first %d bytes (whole blocks) of the %d-byte file, and so did the tracer for the ratio (\"on tshark's prefix\")", n, res.FileBytes)
		}
		// tshark runs as often as the tracer decodes, and its fastest run
		// is compared with the tracer's fastest: a best of N against a
		// single run would favour the tracer.
		var ts toolRun
		var all []float64
		for k := range f.repeat {
			if err := ctx.Err(); err != nil {
				return envErrorf("interrupted: %v", context.Cause(ctx))
			}
			run := runTShark(ctx, tsFile, tsBytes)
			if run.Skipped != "" {
				ts, all = run, nil
				break
			}
			all = append(all, run.Seconds)
			if k == 0 || run.Seconds < ts.Seconds {
				ts = run
			}
		}
		ts.AllSeconds = all
		ts.PrefixNote = note
		res.TShark = &ts
		if ts.Skipped == "" && ts.MBps > 0 {
			for _, r := range vs {
				res.VsTShark = append(res.VsTShark, r.MBps/ts.MBps)
			}
		}
	}
	res.VmHWMKiB, _ = procStatusKiB(0, "VmHWM")
	res.MemoryRemark = "packets and conversations are streamed (tracer.Options.OnPacket, OnConversation) and dropped once counted: peak heap follows the open flows, not the file size"
	return writeBenchOutput(env.Stdout, format, res, "dps-conform bench trace", res.rows())
}

// bestDecode decodes path (size bytes) --repeat times with w workers and
// returns the fastest run, with the times of all; check, when set, judges
// every run.
func (f *benchTraceFlags) bestDecode(ctx context.Context, path string, size int64, w int, check func(traceRun) error) (traceRun, error) {
	var best traceRun
	for k := range f.repeat {
		if err := ctx.Err(); err != nil {
			return best, envErrorf("interrupted: %v", context.Cause(ctx))
		}
		run, err := decodeRun(path, size, w, f.samplePeriod)
		if err != nil {
			if f.file != "" {
				return best, &UsageError{Err: fmt.Errorf("--file: %w", err)}
			}
			return best, envErrorf("decoding the generated capture: %v", err)
		}
		if check != nil {
			if err := check(run); err != nil {
				return best, err
			}
		}
		all := append(best.AllSeconds, run.Seconds)
		if k == 0 || run.Seconds < best.Seconds {
			best = run
		}
		best.AllSeconds = all
	}
	return best, nil
}

// decodeRun decodes path once with w workers and GOMAXPROCS = w, sampling
// the heap.
func decodeRun(path string, size int64, w int, period time.Duration) (traceRun, error) {
	prev := runtime.GOMAXPROCS(min(w, runtime.NumCPU()))
	defer runtime.GOMAXPROCS(prev)
	runtime.GC()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	// Packets and conversations are streamed (OnPacket, OnConversation)
	// and counted, not kept, as a field engineer's large capture would be:
	// memory is then bounded by the open flows. Calls are serialised by
	// the tracer. open counts the packets of each open conversation.
	var run traceRun
	open := map[*tracer.Conversation]int{}
	onPacket := func(conv *tracer.Conversation, _ *tracer.Packet) {
		open[conv]++
		run.Packets++
	}
	count := func(conv *tracer.Conversation) {
		run.Conversations++
		if open[conv]+len(conv.Packets) > 0 {
			run.MQTTConversations++
		}
		delete(open, conv)
		run.Packets += len(conv.Packets) // none when streaming
		run.Problems += len(conv.Problems)
		run.Gaps += len(conv.Gaps)
	}
	start, cpu0 := time.Now(), processCPU()
	c, err := tracer.DecodeFile(path, tracer.Options{Workers: w, OnConversation: count, OnPacket: onPacket})
	el, cpu := time.Since(start), processCPU()-cpu0
	close(stop)
	wg.Wait()
	if err != nil {
		return traceRun{}, err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	peak = max(peak, ms.HeapInuse)
	for _, conv := range c.Conversations { // none when streaming; kept for safety
		count(conv)
	}
	if cpu > 0 {
		run.CPUSeconds = cpu.Seconds()
		run.MBPerCPUSecond = float64(size) / 1e6 / cpu.Seconds()
	}
	run.Workers, run.GOMAXPROCS, run.Seconds, run.Frames, run.PeakHeapBytes = w, runtime.GOMAXPROCS(0), el.Seconds(), c.Frames, peak
	if s := el.Seconds(); s > 0 {
		run.MBps = float64(size) / 1e6 / s
		run.PacketsPerSec = float64(run.Packets) / s
	}
	return run, nil
}

// runCat times cat FILE >/dev/null.
func runCat(ctx context.Context, path string, size int64) toolRun {
	r := toolRun{Command: "cat FILE >/dev/null", Bytes: size}
	if _, err := exec.LookPath("cat"); err != nil {
		r.Skipped = "cat not found"
		return r
	}
	cmd := exec.CommandContext(ctx, "cat", path)
	cmd.Stdout = io.Discard // an os.Pipe drained by a goroutine; /dev/null below is cheaper
	if dn, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		defer dn.Close()
		cmd.Stdout = dn
	}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		r.Skipped = fmt.Sprintf("cat failed: %v", err)
		return r
	}
	r.Seconds = time.Since(start).Seconds()
	if r.Seconds > 0 {
		r.MBps = float64(size) / 1e6 / r.Seconds
	}
	return r
}

// runTShark times tshark -r FILE -Y mqtt -T fields -e mqtt.msgtype on the
// file of size bytes, and counts the MQTT packets it printed (one line per
// frame, packet types separated by commas).
func runTShark(ctx context.Context, path string, size int64) toolRun {
	r := toolRun{Command: "tshark -r FILE -Y mqtt -T fields -e mqtt.msgtype", Bytes: size}
	bin, err := exec.LookPath("tshark")
	if err != nil {
		r.Skipped = "tshark is not installed"
		return r
	}
	cmd := exec.CommandContext(ctx, bin, "-r", path, "-Y", "mqtt", "-T", "fields", "-e", "mqtt.msgtype")
	out, err := cmd.StdoutPipe()
	if err != nil {
		r.Skipped = fmt.Sprintf("tshark: %v", err)
		return r
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		r.Skipped = fmt.Sprintf("tshark: %v", err)
		return r
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := sc.Bytes(); len(line) > 0 {
			r.Packets += bytes.Count(line, []byte(",")) + 1
		}
	}
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		r.Skipped = fmt.Sprintf("tshark failed: %v: %s", err, oneLine(stderr.String()))
		return r
	}
	r.Seconds = time.Since(start).Seconds()
	if r.Seconds > 0 {
		r.MBps = float64(r.Bytes) / 1e6 / r.Seconds
	}
	return r
}

// writeCapturePrefix copies the leading whole blocks (pcapng) or records
// (pcap) of src up to limit bytes into dst, and returns the bytes written.
func writeCapturePrefix(src, dst string, limit int64) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	br := bufio.NewReaderSize(in, 1<<20)
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	head, err := br.Peek(12)
	if err != nil {
		return 0, fmt.Errorf("%s: too short for a capture header", src)
	}
	var n int64
	copyN := func(k int64) error {
		m, err := io.CopyN(bw, br, k)
		n += m
		return err
	}
	switch {
	case binary.BigEndian.Uint32(head) == 0x0A0D0D0A: // pcapng
		var order binary.ByteOrder = binary.LittleEndian
		for n < limit {
			h, err := br.Peek(12)
			if err != nil && len(h) < 8 {
				break
			}
			// Each section has its own byte order, from its header's
			// byte-order magic.
			if binary.BigEndian.Uint32(h) == 0x0A0D0D0A && len(h) == 12 {
				order = binary.LittleEndian
				if binary.BigEndian.Uint32(h[8:]) == 0x1A2B3C4D {
					order = binary.BigEndian
				}
			}
			l := int64(order.Uint32(h[4:]))
			if l < 12 || l%4 != 0 {
				return n, fmt.Errorf("%s: pcapng block at offset %d has length %d", src, n, l)
			}
			if err := copyN(l); err != nil {
				return n, fmt.Errorf("%s: block at offset %d: %w", src, n, err)
			}
		}
	default: // pcap: 24-byte header, 16-byte record headers
		var order binary.ByteOrder = binary.LittleEndian
		switch binary.LittleEndian.Uint32(head) {
		case 0xa1b2c3d4, 0xa1b23c4d:
		default:
			order = binary.BigEndian
			if m := order.Uint32(head); m != 0xa1b2c3d4 && m != 0xa1b23c4d {
				return 0, fmt.Errorf("%s: not a pcap or pcapng file (magic %#08x)", src, m)
			}
		}
		if err := copyN(24); err != nil {
			return n, fmt.Errorf("%s: pcap header: %w", src, err)
		}
		for n < limit {
			h, err := br.Peek(16)
			if err != nil {
				break
			}
			if err := copyN(16 + int64(order.Uint32(h[8:]))); err != nil {
				return n, fmt.Errorf("%s: record at offset %d: %w", src, n, err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return n, err
	}
	return n, out.Close()
}

// rows renders the result as a table.
func (r traceBenchResult) rows() []benchRow {
	mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
	rows := []benchRow{{"file", r.File, map[bool]string{true: "kept", false: "removed at exit"}[r.KeptFile || r.Generated == nil]},
		{"file size", mb(r.FileBytes), fmt.Sprintf("%d bytes", r.FileBytes)}}
	if g := r.Generated; g != nil {
		rows = append(rows,
			benchRow{"generated", fmt.Sprintf("%d flows, %d MQTT packets", g.Flows, g.Packets),
				fmt.Sprintf("%d TCP writes: %d cut inside a packet, %d coalescing packets; %.1f s", g.Sends, g.Split, g.Multi, r.GenSeconds)})
	}
	rows = append(rows, benchRow{})
	for i, run := range r.Runs {
		name := fmt.Sprintf("tracer, %d worker(s)", run.Workers)
		rows = append(rows,
			benchRow{name, fmtRate(run.MBps, "MB/s"), fmt.Sprintf("GOMAXPROCS=%d, %.2f s%s, %d frames, %d conversations (%d with MQTT)", run.GOMAXPROCS, run.Seconds, repeatNote(run.AllSeconds), run.Frames, run.Conversations, run.MQTTConversations)},
			benchRow{"  packets/s", fmtRate(run.PacketsPerSec, "packets/s"), fmt.Sprintf("%d MQTT packets decoded, %d problems, %d gaps", run.Packets, run.Problems, run.Gaps)},
			benchRow{"  per CPU-second", fmtRate(run.MBPerCPUSecond, "MB/cpu-s"), fmt.Sprintf("%.2f CPU-s (user+system): load from other processes does not lower this", run.CPUSeconds)},
			benchRow{"  peak heap", fmt.Sprintf("%.1f MiB", float64(run.PeakHeapBytes)/(1<<20)), "HeapInuse, sampled"})
		if i < len(r.PrefixRuns) {
			p := r.PrefixRuns[i]
			rows = append(rows, benchRow{"  on tshark's prefix", fmtRate(p.MBps, "MB/s"), fmt.Sprintf("%.1f MB, %.2f s%s", float64(r.TShark.Bytes)/1e6, p.Seconds, repeatNote(p.AllSeconds))})
		}
		if i < len(r.VsTShark) {
			target := "target: ≥ 25× on one core"
			if run.Workers > 1 {
				target = "target with both cores: ≥ 300 MB/s"
			}
			rows = append(rows, benchRow{"  vs tshark", fmtRatio(r.VsTShark[i]), target})
		}
		if r.Cat.MBps > 0 {
			rows = append(rows, benchRow{"  vs cat", fmtRatio(run.MBps / r.Cat.MBps), ""})
		}
	}
	rows = append(rows, benchRow{})
	rows = append(rows, toolRow("cat", r.Cat))
	if r.TShark != nil {
		row := toolRow("tshark", *r.TShark)
		if r.TShark.Skipped == "" {
			row.note += repeatNote(r.TShark.AllSeconds)
		}
		rows = append(rows, row)
		if r.TShark.Skipped == "" {
			rows = append(rows, benchRow{"  tshark packets", fmt.Sprintf("%d", r.TShark.Packets), "MQTT PDUs printed"})
		}
		if r.TShark.PrefixNote != "" {
			rows = append(rows, benchRow{"  note", r.TShark.PrefixNote, ""})
		}
	}
	if r.VmHWMKiB > 0 {
		rows = append(rows, benchRow{"VmHWM", fmt.Sprintf("%.1f MiB", float64(r.VmHWMKiB)/1024), "peak RSS of the whole run (generation included)"})
	}
	rows = append(rows, benchRow{"memory", "", r.MemoryRemark})
	return rows
}

// repeatNote describes the repetitions of a run, if there were several.
func repeatNote(all []float64) string {
	if len(all) < 2 {
		return ""
	}
	return fmt.Sprintf(" (fastest of %d)", len(all))
}

func toolRow(name string, t toolRun) benchRow {
	if t.Skipped != "" {
		return benchRow{name, "skipped", t.Skipped}
	}
	return benchRow{name, fmtRate(t.MBps, "MB/s"), fmt.Sprintf("%s: %.2f s on %.1f MB", t.Command, t.Seconds, float64(t.Bytes)/1e6)}
}
