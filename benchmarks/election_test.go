package benchmarks_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/redisstore"
)

// Election failover (issue 14): candidates are separate processes, the
// test binary run again with candidateEnv set, so that the leader can be
// killed with SIGKILL as a crashed worker is, its lease left to expire.

// candidateEnv holds a candidate's configuration (JSON of
// candidateConfig); TestMain runs the candidate instead of the
// benchmarks when it is set.
const candidateEnv = "LOCKCOORD_BENCH_CANDIDATE"

// candidates is how many processes campaign in the failover case.
const candidates = 3

// candidateConfig is what a candidate process is told.
type candidateConfig struct {
	Addr     string        // the benchmark's redis-server
	Prefix   string        // the store's key prefix
	Election string        // the election's name
	Name     string        // the candidate
	TTL      time.Duration // the office's TTL (coordinator.TTL)
}

// runCandidate is the main function of a candidate process: it
// campaigns with coordinator.Lead until it is killed (or gets SIGTERM or
// SIGINT, or its standard input ends), campaigning again when it loses
// a term. It prints "ready"
// once its Redis answers, then "lead TOKEN UNIXNANO" as soon as its
// function runs, on standard output; errors go to standard error.
func runCandidate(spec string) int {
	var cfg candidateConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "candidate: %s: %v\n", candidateEnv, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// standard input is a pipe from the benchmark: it ends when the
	// benchmark does, however it ended, and so does the candidate
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	c := redis.NewClient(&redis.Options{Addr: cfg.Addr})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		fmt.Fprintf(os.Stderr, "candidate %s: %v\n", cfg.Name, err)
		return 1
	}
	co := coordinator.New(redisstore.New(c, redisstore.WithPrefix(cfg.Prefix)))
	defer co.Close(context.Background())
	fmt.Println("ready")
	lead := func(ctx context.Context, term *coordinator.Term) error {
		// one write(2): the benchmark reads the line as it is written
		fmt.Printf("lead %d %d\n", term.Token, time.Now().UnixNano())
		<-ctx.Done()
		return nil
	}
	for ctx.Err() == nil {
		err := co.Lead(ctx, cfg.Election, cfg.Name, cfg.Name, lead, coordinator.TTL(cfg.TTL))
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "candidate %s: %v\n", cfg.Name, err)
			time.Sleep(10 * time.Millisecond)
		}
	}
	return 0
}

// term is a "lead" line of a candidate: its term began.
type term struct {
	name  string
	token uint64
	at    time.Time // the candidate's clock as its function started
}

// candidate is one running candidate process.
type candidate struct {
	name  string
	cmd   *exec.Cmd
	stdin io.Closer     // its standard input, open while it should run
	ready chan struct{} // closed when it printed "ready"
	done  chan struct{} // closed once its output ended and it was reaped
}

// ballot runs the candidate processes of one election.
type ballot struct {
	cfg   candidateConfig       // Name set per candidate
	terms chan term             // every "lead" line, as read
	stop  chan struct{}         // closed by close: readers stop sending
	cands map[string]*candidate // the running candidates
	all   []*candidate          // every candidate started, killed or not
	seq   int
}

func newBallot(tb testing.TB, addr string, ttl time.Duration) *ballot {
	e := &ballot{
		cfg:   candidateConfig{Addr: addr, Prefix: randomPrefix(), Election: "failover", TTL: ttl},
		terms: make(chan term, 64), stop: make(chan struct{}), cands: map[string]*candidate{},
	}
	tb.Cleanup(e.close)
	return e
}

// start starts one more candidate process.
func (e *ballot) start(tb testing.TB) *candidate {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatalf("candidate: %v", err)
	}
	e.seq++
	cfg := e.cfg
	cfg.Name = "candidate-" + strconv.Itoa(e.seq)
	spec, err := json.Marshal(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), candidateEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	in, err := cmd.StdinPipe() // never written: the candidate's lifeline
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("candidate: %v", err)
	}
	cd := &candidate{name: cfg.Name, cmd: cmd, stdin: in, ready: make(chan struct{}), done: make(chan struct{})}
	e.cands[cd.name] = cd
	e.all = append(e.all, cd)
	go e.read(cd, out)
	return cd
}

// read forwards cd's lines until its output ends, then reaps it.
func (e *ballot) read(cd *candidate, out io.Reader) {
	defer close(cd.done)
	defer func() { _ = cd.cmd.Wait() }()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 1 && f[0] == "ready":
			close(cd.ready)
		case len(f) == 3 && f[0] == "lead":
			tok, err1 := strconv.ParseUint(f[1], 10, 64)
			ns, err2 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			select {
			case e.terms <- term{name: cd.name, token: tok, at: time.Unix(0, ns)}:
			case <-e.stop:
			}
		}
	}
	_, _ = io.Copy(io.Discard, out)
}

// awaitReady waits until every candidate printed "ready".
func (e *ballot) awaitReady(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for _, cd := range e.cands {
		select {
		case <-cd.ready:
		case <-cd.done:
			tb.Fatalf("%s exited before it was ready", cd.name)
		case <-t.C:
			tb.Fatalf("%s not ready after %v", cd.name, timeout)
		}
	}
}

// next waits for a term after after (a greater token) of a candidate
// other than not.
func (e *ballot) next(tb testing.TB, after uint64, not string, timeout time.Duration) term {
	tb.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case tm := <-e.terms:
			if tm.token > after && tm.name != not {
				return tm
			}
		case <-t.C:
			tb.Fatalf("no new leader after term %d within %v", after, timeout)
		}
	}
}

// latest returns cur, or the last term read since if newer: a leader
// that lost its office (a renewal too late on a busy machine) and the
// term that followed.
func (e *ballot) latest(cur term) term {
	for {
		select {
		case tm := <-e.terms:
			if tm.token > cur.token {
				cur = tm
			}
		default:
			return cur
		}
	}
}

// kill sends SIGKILL to the candidate named name and forgets it.
func (e *ballot) kill(tb testing.TB, name string) {
	tb.Helper()
	cd := e.cands[name]
	if cd == nil {
		tb.Fatalf("no candidate %s", name)
	}
	if err := cd.cmd.Process.Kill(); err != nil { // SIGKILL
		tb.Fatalf("kill %s: %v", name, err)
	}
	delete(e.cands, name) // reaped by its reader
}

// close kills every candidate and waits for their readers.
func (e *ballot) close() {
	close(e.stop)
	for _, cd := range e.cands {
		_ = cd.cmd.Process.Kill()
	}
	for _, cd := range e.all {
		<-cd.done
		_ = cd.stdin.Close()
	}
}

// failoverTTLs are the office TTLs of the failover case.
var failoverTTLs = []time.Duration{time.Second, 200 * time.Millisecond}

// BenchmarkFailover measures an election's failover: three candidates,
// each a process of its own campaigning with coordinator.Lead; one op
// kills the leader's process with SIGKILL and lasts until another
// candidate's function runs (its own clock, read as the function
// starts), then the killed candidate is replaced. The kill comes after a
// random pause of up to a renewal interval (a third of the TTL), so the
// lease has between two thirds of the TTL and all of it left. It
// reports the
// failover's p50 and p99 next to the office's TTL, and the p50 from the
// lease's expiry (the time it had left as the kill was sent) to the new
// leader: what the hand-off itself adds.
func BenchmarkFailover(b *testing.B) {
	for _, ttl := range failoverTTLs {
		b.Run("ttl="+ttl.String()+"/lib=lockcoord", func(b *testing.B) { benchFailover(b, ttl) })
	}
}

func benchFailover(b *testing.B, ttl time.Duration) {
	c, _ := newClient(b)
	flush(b, c)
	e := newBallot(b, server(b).Addr, ttl)
	co := coordinator.New(redisstore.New(c, redisstore.WithPrefix(e.cfg.Prefix)))
	b.Cleanup(func() { _ = co.Close(context.Background()) })
	for range candidates {
		e.start(b)
	}
	timeout := 10*ttl + 10*time.Second
	cur := e.next(b, 0, "", timeout)
	var failovers, afterExpiry []time.Duration
	b.ResetTimer()
	b.StopTimer()
	for voids := 0; len(failovers) < b.N; {
		e.awaitReady(b, timeout)
		// a crash at any moment of the leader's renewal cycle (a third
		// of the TTL), not just after the restart
		time.Sleep(rand.N(ttl / 3))
		cur = e.latest(cur)
		b.StartTimer()
		killed := time.Now()
		e.kill(b, cur.name)
		sent := time.Now()
		l, err := co.Inspect(context.Background(), coordinator.Election(e.cfg.Election))
		nxt := e.next(b, cur.token, cur.name, timeout)
		b.StopTimer()
		switch {
		case errors.Is(err, coordinator.ErrNotHeld), err == nil && l.Token != cur.token:
			// the office had changed hands before the kill: no failover
			// to time; give up when that is the rule rather than a hiccup
			if voids++; voids > b.N+3 {
				b.Fatalf("the office kept changing hands before the kill (%d times)", voids)
			}
		case err != nil:
			b.Fatalf("inspect: %v", err)
		default:
			failovers = append(failovers, nxt.at.Sub(killed))
			expiry := sent.Add(l.Remaining)
			if l.Remaining <= 0 {
				expiry = l.ExpiresAt
			}
			afterExpiry = append(afterExpiry, nxt.at.Sub(expiry))
		}
		cur = nxt
		e.start(b)
	}
	b.ReportMetric(millis(percentile(failovers, 50)), "failover-p50-ms")
	b.ReportMetric(millis(percentile(failovers, 99)), "failover-p99-ms")
	b.ReportMetric(millis(percentile(afterExpiry, 50)), "after-expiry-p50-ms")
	b.ReportMetric(millis(ttl), "ttl-ms")
}

// percentile returns the p-th percentile of ds (as latencies.report
// picks it: the element at len×p/100 of the sorted sample).
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func millis(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
