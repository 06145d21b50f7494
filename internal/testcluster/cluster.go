package testcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/internal/testredis"
)

// ClusterConfig shapes a Redis Cluster. Zero fields take the defaults.
type ClusterConfig struct {
	// Masters is the number of masters (default 3, at least 3: redis-cli
	// refuses fewer).
	Masters int
	// Replicas is the number of replicas per master (default 1; negative
	// for none).
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a master must be
	// unreachable before its replica takes over (default 2s).
	NodeTimeout time.Duration
	// Dir holds the nodes' folders (default a new temporary folder,
	// removed by Close).
	Dir string
}

// Cluster is a Redis Cluster of child processes on loopback ports.
type Cluster struct {
	// Nodes are every node, masters first as created (roles change with
	// failovers: ask Topology).
	Nodes []*Node
	cfg   ClusterConfig
	owned bool // Dir was created by StartCluster
}

// StartCluster starts cfg.Masters*(1+cfg.Replicas) redis-server processes
// with --cluster-enabled yes on free loopback ports, joins them with
// redis-cli --cluster create --cluster-replicas, and waits until the
// cluster is healthy: every slot served, every replica in sync. On error
// it stops whatever it started. A missing binary gives testredis.ErrNotInstalled.
//
// A free port can be taken by another process between the moment it is
// picked and the moment a node binds it (test packages start clusters in
// parallel): when it made the folder itself, StartCluster then tries
// again on new ports, up to startAttempts times.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	return retryStart(ctx, cfg.Dir == "", func() (*Cluster, error) { return startCluster(ctx, cfg) })
}

// startAttempts bounds the attempts of StartCluster and StartSentinel.
const startAttempts = 3

// retryStart calls start until it succeeds, up to startAttempts times when
// retry is set; a missing binary or an ended ctx ends it at once.
func retryStart[T any](ctx context.Context, retry bool, start func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := start()
		if err == nil || !retry || attempt == startAttempts || errors.Is(err, testredis.ErrNotInstalled) || ctx.Err() != nil {
			return v, err
		}
	}
}

func startCluster(ctx context.Context, cfg ClusterConfig) (c *Cluster, err error) {
	if cfg, err = cfg.withDefaults(); err != nil {
		return nil, err
	}
	server, err := testredis.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	cli, err := testredis.LookPath("redis-cli")
	if err != nil {
		return nil, err
	}
	c = &Cluster{cfg: cfg}
	if c.cfg.Dir, c.owned, err = ownDir(cfg.Dir, "testcluster-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Close()
			c = nil
		}
	}()
	if c.Nodes, err = newClusterNodes(c.cfg, server); err != nil {
		return c, err
	}
	if err := startAll(ctx, c.Nodes); err != nil {
		return c, err
	}
	if err := c.create(ctx, cli); err != nil {
		return c, err
	}
	return c, c.WaitHealthy(ctx)
}

// withDefaults fills the zero fields of cfg and checks it.
func (cfg ClusterConfig) withDefaults() (ClusterConfig, error) {
	if cfg.Masters == 0 {
		cfg.Masters = 3
	}
	if cfg.Masters < 3 {
		return cfg, fmt.Errorf("testcluster: %d masters, want at least 3", cfg.Masters)
	}
	switch {
	case cfg.Replicas == 0:
		cfg.Replicas = 1
	case cfg.Replicas < 0:
		cfg.Replicas = 0
	}
	if cfg.NodeTimeout == 0 {
		cfg.NodeTimeout = 2 * time.Second
	}
	return cfg, nil
}

// syncArgs make replicas sync without disk and at once.
var syncArgs = []string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}

// newClusterNodes prepares (does not start) the cluster's nodes, each on
// a free port and bus port, in a folder of its own under cfg.Dir.
func newClusterNodes(cfg ClusterConfig, server string) ([]*Node, error) {
	var nodes []*Node
	for i := range cfg.Masters * (1 + cfg.Replicas) {
		port, err := testredis.FreePort()
		if err != nil {
			return nodes, err
		}
		bus, err := testredis.FreePort()
		if err != nil {
			return nodes, err
		}
		args := append(testredis.ServerArgs(server, port), syncArgs...)
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", strconv.FormatInt(cfg.NodeTimeout.Milliseconds(), 10),
			// a replica takes over however long it was cut off
			"--cluster-replica-validity-factor", "0",
			"--logfile", "")
		nd, err := testredis.New(filepath.Join(cfg.Dir, "node"+strconv.Itoa(i)), port, args...)
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, nd)
	}
	return nodes, nil
}

// create joins the started nodes with redis-cli --cluster create.
func (c *Cluster) create(ctx context.Context, cli string) error {
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(c.cfg.Replicas), "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testcluster: redis-cli --cluster create: %w: %s", err, out)
	}
	return nil
}

// Close stops every node and removes the folder StartCluster created.
// It may be called on a nil Cluster.
func (c *Cluster) Close() {
	if c == nil {
		return
	}
	for _, nd := range c.Nodes {
		nd.Kill()
	}
	if c.owned {
		_ = os.RemoveAll(c.cfg.Dir)
	}
}

// Addrs returns every node's address (seeds for a ClusterClient).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		out[i] = nd.Addr
	}
	return out
}

// Client returns a new ClusterClient seeded with every node; opts adjust
// its options. The caller closes it.
func (c *Cluster) Client(opts ...func(*redis.ClusterOptions)) *redis.ClusterClient {
	o := &redis.ClusterOptions{Addrs: c.Addrs()}
	for _, f := range opts {
		f(o)
	}
	return redis.NewClusterClient(o)
}

// Node returns the node at addr, or nil.
func (c *Cluster) Node(addr string) *Node {
	for _, nd := range c.Nodes {
		if nd.Addr == addr {
			return nd
		}
	}
	return nil
}

// ClusterNode is one line of CLUSTER NODES.
type ClusterNode struct {
	ID       string
	Addr     string // host:port, without the bus port
	Master   bool
	MasterID string // of a replica
	Failed   bool   // flags fail or fail?
	Slots    [][2]int
}

// parseClusterNodes reads the reply of CLUSTER NODES.
func parseClusterNodes(s string) ([]ClusterNode, error) {
	var out []ClusterNode
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("testcluster: CLUSTER NODES line %q", line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		addr, _, _ = strings.Cut(addr, ",")
		n := ClusterNode{ID: f[0], Addr: addr}
		for flag := range strings.SplitSeq(f[2], ",") {
			switch flag {
			case "master":
				n.Master = true
			case "fail", "fail?":
				n.Failed = true
			}
		}
		if f[3] != "-" {
			n.MasterID = f[3]
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") { // a slot being migrated
				continue
			}
			lo, hi, ok := strings.Cut(r, "-")
			if !ok {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("testcluster: slot range %q", r)
			}
			n.Slots = append(n.Slots, [2]int{a, b})
		}
		out = append(out, n)
	}
	return out, nil
}

// Topology returns CLUSTER NODES as the node at addr sees it (any running
// node when addr is "").
func (c *Cluster) Topology(ctx context.Context, addr string) ([]ClusterNode, error) {
	var errs []error
	for _, nd := range c.Nodes {
		if (addr != "" && nd.Addr != addr) || !nd.Running() {
			continue
		}
		v, err := nd.Do(ctx, "CLUSTER", "NODES")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s, _ := v.(string)
		return parseClusterNodes(s)
	}
	return nil, fmt.Errorf("testcluster: no node answered CLUSTER NODES: %w", errors.Join(errs...))
}

// Masters returns the masters serving slots, as a running node sees them.
func (c *Cluster) Masters(ctx context.Context) ([]ClusterNode, error) {
	top, err := c.Topology(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []ClusterNode
	for _, n := range top {
		if n.Master && !n.Failed && len(n.Slots) > 0 {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b ClusterNode) int { return a.Slots[0][0] - b.Slots[0][0] })
	return out, nil
}

// MasterOf returns the address of the master serving slot.
func (c *Cluster) MasterOf(ctx context.Context, slot int) (string, error) {
	ms, err := c.Masters(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		for _, r := range m.Slots {
			if slot >= r[0] && slot <= r[1] {
				return m.Addr, nil
			}
		}
	}
	return "", fmt.Errorf("testcluster: no master serves slot %d", slot)
}

// ReplicaOf returns the address of a replica of the master at addr.
func (c *Cluster) ReplicaOf(ctx context.Context, addr string) (string, error) {
	top, err := c.Topology(ctx, "")
	if err != nil {
		return "", err
	}
	id := ""
	for _, n := range top {
		if n.Addr == addr {
			id = n.ID
		}
	}
	for _, n := range top {
		if id != "" && n.MasterID == id && !n.Failed {
			return n.Addr, nil
		}
	}
	return "", fmt.Errorf("testcluster: %s has no replica", addr)
}

// Failover sends CLUSTER FAILOVER to a replica of the master at addr (a
// manual failover: the master stops writes, the replica catches up and
// takes over, no write is lost) and waits until the cluster is healthy
// with the replica as master. It returns the new master's address.
func (c *Cluster) Failover(ctx context.Context, addr string) (string, error) {
	rep, err := c.ReplicaOf(ctx, addr)
	if err != nil {
		return "", err
	}
	if _, err := c.Node(rep).Do(ctx, "CLUSTER", "FAILOVER"); err != nil {
		return "", fmt.Errorf("testcluster: CLUSTER FAILOVER on %s: %w", rep, err)
	}
	if err := c.waitMaster(ctx, rep); err != nil {
		return "", err
	}
	return rep, c.WaitHealthy(ctx)
}

// WaitPromoted waits until a node other than old serves every slot old
// served (after old was killed), and returns its address.
func (c *Cluster) WaitPromoted(ctx context.Context, old string, oldSlots [][2]int) (string, error) {
	promoted := ""
	err := poll(ctx, 20*time.Millisecond, func() error {
		ms, err := c.Masters(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Addr != old && slices.Equal(m.Slots, oldSlots) {
				promoted = m.Addr
				return nil
			}
		}
		return errors.New("no new master serves its slots")
	})
	if err != nil {
		return "", fmt.Errorf("testcluster: no replica of %s took over: %w", old, err)
	}
	return promoted, c.waitMaster(ctx, promoted)
}

// waitMaster waits until every running node sees addr as a master.
func (c *Cluster) waitMaster(ctx context.Context, addr string) error {
	err := poll(ctx, 20*time.Millisecond, func() error {
		for _, nd := range c.Nodes {
			if !nd.Running() {
				continue
			}
			top, err := c.Topology(ctx, nd.Addr)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(top, func(n ClusterNode) bool {
				return n.Addr == addr && n.Master && !n.Failed && len(n.Slots) > 0
			}) {
				return fmt.Errorf("%s does not see it as a master", nd.Addr)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("testcluster: %s did not become master everywhere: %w", addr, err)
	}
	return nil
}

// Rejoin starts a killed node again; its nodes.conf makes it rejoin the
// cluster, as a replica of whoever took its slots. Rejoin waits until the
// cluster is healthy.
func (c *Cluster) Rejoin(ctx context.Context, nd *Node) error {
	if err := nd.Start(ctx); err != nil {
		return err
	}
	return c.WaitHealthy(ctx)
}

// WaitHealthy waits until every running node reports cluster_state:ok,
// all agree on which masters serve the 16384 slots, every running node
// that serves no slot is a replica, and every replica's link to its
// master is up.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	if err := poll(ctx, 25*time.Millisecond, func() error { return c.healthy(ctx) }); err != nil {
		return fmt.Errorf("testcluster: cluster not healthy: %w", err)
	}
	return nil
}

func (c *Cluster) healthy(ctx context.Context) error {
	var view string
	for _, nd := range c.Nodes {
		if !nd.Running() {
			continue
		}
		info, err := nd.Do(ctx, "CLUSTER", "INFO")
		if err != nil {
			return err
		}
		if s, _ := info.(string); !strings.Contains(s, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", nd.Addr)
		}
		top, err := c.Topology(ctx, nd.Addr)
		if err != nil {
			return err
		}
		var masters []string
		covered := 0
		for _, n := range top {
			if n.Failed && c.running(n.Addr) {
				return fmt.Errorf("%s sees %s as failed", nd.Addr, n.Addr)
			}
			// redis-cli --cluster create makes the replicas replicate
			// after the slots are served: until then they are masters
			// without slots
			if n.Master && len(n.Slots) == 0 && c.running(n.Addr) {
				return fmt.Errorf("%s sees %s as a master without slots, not yet a replica", nd.Addr, n.Addr)
			}
			if n.Master && len(n.Slots) > 0 {
				for _, r := range n.Slots {
					covered += r[1] - r[0] + 1
				}
				masters = append(masters, fmt.Sprint(n.Addr, n.Slots))
			}
		}
		if covered != 16384 {
			return fmt.Errorf("%s sees %d slots served", nd.Addr, covered)
		}
		slices.Sort(masters)
		v := strings.Join(masters, " ")
		if view != "" && v != view {
			return fmt.Errorf("nodes disagree: %s vs %s", v, view)
		}
		view = v
		rep, err := nd.Info(ctx, "replication")
		if err != nil {
			return err
		}
		if rep["role"] == "slave" && rep["master_link_status"] != "up" {
			return fmt.Errorf("%s: link to its master is %s", nd.Addr, rep["master_link_status"])
		}
	}
	return nil
}

func (c *Cluster) running(addr string) bool {
	nd := c.Node(addr)
	return nd != nil && nd.Running()
}
