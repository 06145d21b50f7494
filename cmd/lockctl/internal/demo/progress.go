package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// progressLine is what a progress report shows.
type progressLine struct {
	rec   RecorderStats
	store StoreStats
}

// progress reports the demo's progress: a bar redrawn in place on a
// terminal, a line per second otherwise.
type progress struct {
	w        io.Writer
	terminal bool
	total    time.Duration
	start    time.Time
	last     time.Time // of the last report
}

func newProgress(w io.Writer, terminal bool, total time.Duration, start time.Time) *progress {
	return &progress{w: w, terminal: terminal, total: total, start: start}
}

// run reports until ctx ends.
func (p *progress) run(ctx context.Context, read func() progressLine) {
	if p.w == nil {
		<-ctx.Done()
		return
	}
	every := time.Second
	if p.terminal {
		every = 200 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.report(read(), false)
		}
	}
}

// done prints the final report.
func (p *progress) done(l progressLine) {
	if p.w != nil && (p.terminal || time.Since(p.last) > 500*time.Millisecond) {
		p.report(l, true)
	}
}

func (p *progress) report(l progressLine, final bool) {
	p.last = time.Now()
	el := time.Since(p.start)
	frac := min(float64(el)/float64(p.total), 1)
	if final {
		frac = 1
	}
	stats := fmt.Sprintf("%3.0f%% %5.1fs  completed %d  acquired %d  conflicts %d  renewed %d  rejected %d",
		frac*100, el.Seconds(), l.store.Completed, l.rec.Acquired, l.rec.Conflicts, l.rec.Renewed, l.store.Rejected)
	if !p.terminal {
		fmt.Fprintln(p.w, "demo: "+stats)
		return
	}
	const width = 24
	n := int(frac * width)
	bar := "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "]"
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r%s %s\x1b[K%s", bar, stats, end)
}
