package testcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/internal/testredis"
)

// SentinelConfig shapes a Sentinel group. Zero fields take the defaults.
type SentinelConfig struct {
	// MasterName is the name Sentinel monitors the master under (default
	// "lockcoord").
	MasterName string
	// Replicas is the number of replicas (default 1).
	Replicas int
	// Sentinels is the number of Sentinels (default 3); the quorum is a
	// majority of them.
	Sentinels int
	// DownAfter is down-after-milliseconds: how long the master must be
	// unreachable before a failover starts (default 1s).
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout (default 5s).
	FailoverTimeout time.Duration
	// Dir holds the processes' folders (default a new temporary folder,
	// removed by Close).
	Dir string
}

// Sentinel is a Redis master with replicas, monitored by Sentinels, all
// child processes on loopback ports.
type Sentinel struct {
	// Data are the master and replicas as started: Data[0] is the first
	// master (roles change with failovers: ask MasterAddr).
	Data []*Node
	// Sentinels are the redis-sentinel processes.
	Sentinels []*Node
	cfg       SentinelConfig
	owned     bool
}

// StartSentinel starts a master, cfg.Replicas replicas and cfg.Sentinels
// Sentinels on free loopback ports, and waits until every Sentinel knows
// the replicas and the other Sentinels, so that a failover can be
// authorised. Sentinel runs as redis-sentinel when installed, else as
// redis-server --sentinel. On error it stops whatever it started; a
// missing binary gives testredis.ErrNotInstalled.
//
// Like StartCluster, it tries again on new ports when a start fails and
// it made the folder itself.
func StartSentinel(ctx context.Context, cfg SentinelConfig) (*Sentinel, error) {
	return retryStart(ctx, cfg.Dir == "", func() (*Sentinel, error) { return startSentinel(ctx, cfg) })
}

func startSentinel(ctx context.Context, cfg SentinelConfig) (s *Sentinel, err error) {
	server, err := testredis.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	s = &Sentinel{cfg: cfg.withDefaults()}
	if s.cfg.Dir, s.owned, err = ownDir(cfg.Dir, "testsentinel-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Close()
			s = nil
		}
	}()
	if err := s.startData(ctx, server); err != nil {
		return s, err
	}
	if err := s.startSentinels(ctx, sentinelCommand(server)); err != nil {
		return s, err
	}
	return s, s.WaitReady(ctx)
}

// withDefaults fills the zero fields of cfg.
func (cfg SentinelConfig) withDefaults() SentinelConfig {
	if cfg.MasterName == "" {
		cfg.MasterName = "lockcoord"
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Sentinels == 0 {
		cfg.Sentinels = 3
	}
	if cfg.DownAfter == 0 {
		cfg.DownAfter = time.Second
	}
	if cfg.FailoverTimeout == 0 {
		cfg.FailoverTimeout = 5 * time.Second
	}
	return cfg
}

// sentinelCommand returns the command line of a Sentinel with config file
// conf: redis-sentinel when installed, else redis-server --sentinel.
func sentinelCommand(server string) func(conf string) []string {
	if bin, err := testredis.LookPath("redis-sentinel"); err == nil {
		return func(conf string) []string { return []string{bin, conf} }
	}
	return func(conf string) []string { return []string{server, conf, "--sentinel"} }
}

// startData starts the master and its replicas, and waits until the
// replicas are in sync.
func (s *Sentinel) startData(ctx context.Context, server string) error {
	for i := range 1 + s.cfg.Replicas {
		port, err := testredis.FreePort()
		if err != nil {
			return err
		}
		args := append(testredis.ServerArgs(server, port), syncArgs...)
		if i > 0 {
			args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(s.Data[0].Port))
		}
		nd, err := testredis.New(filepath.Join(s.cfg.Dir, "data"+strconv.Itoa(i)), port, args...)
		if err != nil {
			return err
		}
		s.Data = append(s.Data, nd)
	}
	if err := startAll(ctx, s.Data); err != nil {
		return err
	}
	// Sentinel learns the replicas from the master's INFO, which it reads
	// on connecting and then every 10 seconds: start it once they are in
	// sync, or it would wait for the second reading
	return s.waitReplicasOnline(ctx, s.Data[0])
}

// startSentinels starts the Sentinels, each with a config file of its own
// that monitors the first master.
func (s *Sentinel) startSentinels(ctx context.Context, command func(conf string) []string) error {
	for i := range s.cfg.Sentinels {
		port, err := testredis.FreePort()
		if err != nil {
			return err
		}
		dir := filepath.Join(s.cfg.Dir, "sentinel"+strconv.Itoa(i))
		nd, err := testredis.New(dir, port, command(filepath.Join(dir, "sentinel.conf"))...)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "sentinel.conf"), []byte(s.sentinelConf(port, dir)), 0o644); err != nil {
			return err
		}
		s.Sentinels = append(s.Sentinels, nd)
	}
	return startAll(ctx, s.Sentinels)
}

// sentinelConf is the config file of a Sentinel on port in dir: it
// monitors the first master with a majority of the Sentinels as quorum.
func (s *Sentinel) sentinelConf(port int, dir string) string {
	cfg := s.cfg
	return fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
dir %s
sentinel monitor %s 127.0.0.1 %d %d
sentinel down-after-milliseconds %[3]s %[6]d
sentinel failover-timeout %[3]s %[7]d
sentinel parallel-syncs %[3]s 1
`, port, dir, cfg.MasterName, s.Data[0].Port, cfg.Sentinels/2+1, cfg.DownAfter.Milliseconds(), cfg.FailoverTimeout.Milliseconds())
}

// Close stops every process and removes the folder StartSentinel
// created. It may be called on a nil Sentinel.
func (s *Sentinel) Close() {
	if s == nil {
		return
	}
	for _, nd := range s.Sentinels {
		nd.Kill()
	}
	for _, nd := range s.Data {
		nd.Kill()
	}
	if s.owned {
		_ = os.RemoveAll(s.cfg.Dir)
	}
}

// MasterName returns the name the master is monitored under.
func (s *Sentinel) MasterName() string { return s.cfg.MasterName }

// SentinelAddrs returns the Sentinels' addresses.
func (s *Sentinel) SentinelAddrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, nd := range s.Sentinels {
		out[i] = nd.Addr
	}
	return out
}

// Client returns a new failover client (go-redis NewFailoverClient) that
// follows the master through the Sentinels; opts adjust its options. The
// caller closes it.
func (s *Sentinel) Client(opts ...func(*redis.FailoverOptions)) *redis.Client {
	o := &redis.FailoverOptions{MasterName: s.cfg.MasterName, SentinelAddrs: s.SentinelAddrs()}
	for _, f := range opts {
		f(o)
	}
	return redis.NewFailoverClient(o)
}

// Node returns the data node at addr, or nil.
func (s *Sentinel) Node(addr string) *Node {
	for _, nd := range s.Data {
		if nd.Addr == addr {
			return nd
		}
	}
	return nil
}

// MasterAddr returns the master's address as every running Sentinel
// reports it; it fails when they disagree.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	addr := ""
	for _, nd := range s.Sentinels {
		if !nd.Running() {
			continue
		}
		v, err := nd.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.cfg.MasterName)
		if err != nil {
			return "", err
		}
		hp, ok := v.([]any)
		if !ok || len(hp) != 2 {
			return "", fmt.Errorf("testcluster: sentinel %s: master address %v", nd.Addr, v)
		}
		a := fmt.Sprint(hp[0]) + ":" + fmt.Sprint(hp[1])
		if addr != "" && a != addr {
			return "", fmt.Errorf("testcluster: sentinels disagree on the master: %s, %s", addr, a)
		}
		addr = a
	}
	if addr == "" {
		return "", errors.New("testcluster: no sentinel running")
	}
	return addr, nil
}

// WaitReady waits until every Sentinel agrees on the master, the master
// has its replicas online (when the data nodes that are not the master
// run) and every Sentinel knows the other Sentinels and the running
// replicas.
func (s *Sentinel) WaitReady(ctx context.Context) error {
	if err := poll(ctx, 25*time.Millisecond, func() error { return s.ready(ctx) }); err != nil {
		return fmt.Errorf("testcluster: sentinel group not ready: %w", err)
	}
	return nil
}

func (s *Sentinel) ready(ctx context.Context) error {
	addr, err := s.MasterAddr(ctx)
	if err != nil {
		return err
	}
	m := s.Node(addr)
	if m == nil || !m.Running() {
		return fmt.Errorf("master %s does not run", addr)
	}
	want, err := s.replicasOnline(ctx, m)
	if err != nil {
		return err
	}
	running := 0
	for _, nd := range s.Sentinels {
		if nd.Running() {
			running++
		}
	}
	for _, nd := range s.Sentinels {
		if !nd.Running() {
			continue
		}
		v, err := nd.Do(ctx, "SENTINEL", "MASTER", s.cfg.MasterName)
		if err != nil {
			return err
		}
		f := fields(v)
		if f["flags"] != "master" {
			return fmt.Errorf("sentinel %s: master flags %q", nd.Addr, f["flags"])
		}
		if n, _ := strconv.Atoi(f["num-other-sentinels"]); n < running-1 {
			return fmt.Errorf("sentinel %s knows %d other sentinels, want %d", nd.Addr, n, running-1)
		}
		reps, err := nd.Do(ctx, "SENTINEL", "REPLICAS", s.cfg.MasterName)
		if err != nil {
			return err
		}
		ok := 0
		list, _ := reps.([]any)
		for _, r := range list {
			rf := fields(r)
			if rf["flags"] == "slave" && rf["master-link-status"] == "ok" {
				ok++
			}
		}
		if ok < want {
			return fmt.Errorf("sentinel %s sees %d of %d replicas in sync", nd.Addr, ok, want)
		}
	}
	return nil
}

// replicasOnline checks that m is a master with every other running data
// node online as its replica, and returns their number.
func (s *Sentinel) replicasOnline(ctx context.Context, m *Node) (int, error) {
	rep, err := m.Info(ctx, "replication")
	if err != nil {
		return 0, err
	}
	if rep["role"] != "master" {
		return 0, fmt.Errorf("master %s says role:%s", m.Addr, rep["role"])
	}
	want := 0
	for _, nd := range s.Data {
		if nd != m && nd.Running() {
			want++
		}
	}
	online := 0
	for k, v := range rep {
		if strings.HasPrefix(k, "slave") && strings.Contains(v, "state=online") {
			online++
		}
	}
	if online < want {
		return 0, fmt.Errorf("master %s has %d of %d replicas online", m.Addr, online, want)
	}
	return want, nil
}

func (s *Sentinel) waitReplicasOnline(ctx context.Context, m *Node) error {
	err := poll(ctx, 10*time.Millisecond, func() error {
		_, err := s.replicasOnline(ctx, m)
		return err
	})
	if err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	return nil
}

// fields reads a RESP2 flat list or a RESP3 map of strings.
func fields(v any) map[string]string {
	m := map[string]string{}
	switch x := v.(type) {
	case []any:
		for i := 0; i+1 < len(x); i += 2 {
			m[fmt.Sprint(x[i])] = fmt.Sprint(x[i+1])
		}
	case map[any]any:
		for k, val := range x {
			m[fmt.Sprint(k)] = fmt.Sprint(val)
		}
	}
	return m
}

// WaitFailover waits until the Sentinels agree on a master other than old
// that says role:master, and returns its address.
func (s *Sentinel) WaitFailover(ctx context.Context, old string) (string, error) {
	addr := ""
	err := poll(ctx, 10*time.Millisecond, func() (err error) {
		if addr, err = s.MasterAddr(ctx); err != nil {
			return err
		}
		if nd := s.Node(addr); addr == old || nd == nil || !nd.Running() {
			return fmt.Errorf("the master is still %s, or does not run", addr)
		}
		rep, err := s.Node(addr).Info(ctx, "replication")
		if err != nil {
			return err
		}
		if rep["role"] != "master" {
			return fmt.Errorf("%s says role:%s", addr, rep["role"])
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("testcluster: no failover away from %s: %w", old, err)
	}
	return addr, nil
}

// RejoinAsReplica starts the killed data node nd again as a replica of the
// current master and waits until the group is ready.
func (s *Sentinel) RejoinAsReplica(ctx context.Context, nd *Node) error {
	addr, err := s.MasterAddr(ctx)
	if err != nil {
		return err
	}
	host, port, _ := strings.Cut(addr, ":")
	if err := nd.Start(ctx, "--replicaof", host, port); err != nil {
		return err
	}
	return s.WaitReady(ctx)
}
