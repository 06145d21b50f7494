package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/lockcoord/lockcoord/redisstore"
)

// partitionInfo is one partition of a prefix and the node that holds it.
type partitionInfo struct {
	Partition int      `json:"partition"`
	Slot      int      `json:"slot"`         // -1 when Redis is not a Cluster
	Node      string   `json:"node"`         // host:port of the master holding it
	Replicas  []string `json:"replicas"`     // host:port, then " (failed)" if failed
	Events    int64    `json:"events"`       // entries in its stream (XLEN)
	Fence     uint64   `json:"fence,string"` // last fencing token issued (0: none yet), a decimal string
}

func (a *app) partitionsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "partitions",
		Short: "Show which Redis node holds each partition of the prefix",
		Long: `partitions prints, for each partition of --prefix, the Cluster slot of its
hash tag, the master that holds it (and that master's replicas), the
length of its event stream and its last fencing token. On a Cluster the
slots and nodes come from CLUSTER SHARDS (a replica marked failed is
followed by "(failed)"); elsewhere every partition is on
the one master lockctl is connected to (CLIENT INFO), its replicas from
INFO replication. A per-node summary follows the table.

Exit status: 0; ` + commonExits + `.`,
		Example: `  lockctl partitions --redis-url 'redis://10.0.0.1:7000?addr=10.0.0.2:7000'
  lockctl partitions --json | jq -r '.[] | "\(.partition) \(.node)"'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.opContext(cmd.Context())
			defer cancel()
			rc, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = rc.Close() }()
			ps, err := partitionLayout(ctx, rc.client, rc.store)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(ps)
			}
			return writePartitions(a.stdout, ps)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

// partitionLayout finds the node of every partition of s, its stream
// length and fencing counter.
func partitionLayout(ctx context.Context, client redis.UniversalClient, s *redisstore.Store) ([]partitionInfo, error) {
	ps := make([]partitionInfo, s.Layout().Partitions())
	if cc, ok := client.(*redis.ClusterClient); ok {
		if err := clusterLayout(ctx, cc, s, ps); err != nil {
			return nil, err
		}
	} else {
		node, replicas, err := serverOf(ctx, client)
		if err != nil {
			return nil, err
		}
		for p := range ps {
			ps[p] = partitionInfo{Partition: p, Slot: -1, Node: node, Replicas: replicas}
		}
	}
	// one command per partition: each key is in its own slot
	lens := make([]*redis.IntCmd, len(ps))
	fences := make([]*redis.StringCmd, len(ps))
	_, err := client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for p := range ps {
			lens[p] = pipe.XLen(ctx, s.Layout().StreamKey(p))
			fences[p] = pipe.Get(ctx, s.Layout().FenceKey(p))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read the partitions' streams and fences: %w", err)
	}
	for p := range ps {
		ps[p].Events = lens[p].Val()
		if v, err := fences[p].Result(); err == nil {
			if ps[p].Fence, _, err = redisstore.ParseFence(v); err != nil {
				return nil, fmt.Errorf("fencing counter %s = %q: %w", s.Layout().FenceKey(p), v, err)
			}
		}
	}
	return ps, nil
}

// clusterLayout fills the slot, master and replicas of each partition
// from CLUSTER KEYSLOT and CLUSTER SHARDS.
func clusterLayout(ctx context.Context, cc *redis.ClusterClient, s *redisstore.Store, ps []partitionInfo) error {
	shards, err := cc.ClusterShards(ctx).Result()
	if err != nil {
		return fmt.Errorf("CLUSTER SHARDS: %w", err)
	}
	slots := make([]*redis.IntCmd, len(ps))
	_, err = cc.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for p := range ps {
			slots[p] = pipe.ClusterKeySlot(ctx, s.Layout().FenceKey(p))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("CLUSTER KEYSLOT: %w", err)
	}
	for p := range ps {
		slot := int(slots[p].Val())
		ps[p] = partitionInfo{Partition: p, Slot: slot, Node: "?", Replicas: []string{}}
		for _, sh := range shards {
			if !slices.ContainsFunc(sh.Slots, func(r redis.SlotRange) bool { return int64(slot) >= r.Start && int64(slot) <= r.End }) {
				continue
			}
			for _, n := range sh.Nodes {
				addr := nodeAddr(n)
				switch {
				case n.Role == "master":
					ps[p].Node = addr
				case n.Health == "failed":
					ps[p].Replicas = append(ps[p].Replicas, addr+" (failed)")
				default:
					// online, or loading: Redis 7.0 says loading until the
					// cluster bus carried a replication offset, so it is
					// not told apart
					ps[p].Replicas = append(ps[p].Replicas, addr)
				}
			}
			slices.Sort(ps[p].Replicas)
		}
	}
	return nil
}

func nodeAddr(n redis.Node) string {
	host := n.IP
	if host == "" {
		host = n.Endpoint
	}
	return host + ":" + strconv.FormatInt(n.Port, 10)
}

// serverOf returns the address of the server client talks to (as the
// server sees its end of the connection) and of its connected replicas.
func serverOf(ctx context.Context, client redis.UniversalClient) (string, []string, error) {
	cmds, err := client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Do(ctx, "CLIENT", "INFO")
		pipe.Info(ctx, "replication")
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("CLIENT INFO, INFO replication: %w", err)
	}
	info, _ := cmds[0].(*redis.Cmd).Text()
	repl := cmds[1].(*redis.StringCmd).Val()
	node := "?"
	for f := range strings.FieldsSeq(info) {
		if v, ok := strings.CutPrefix(f, "laddr="); ok {
			node = v
		}
	}
	replicas := []string{}
	for line := range strings.SplitSeq(repl, "\n") {
		// slave0:ip=127.0.0.1,port=6380,state=online,offset=...,lag=0
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(k, "slave") || !strings.Contains(v, "state=online") {
			continue
		}
		var ip, port string
		for kv := range strings.SplitSeq(v, ",") {
			if x, ok := strings.CutPrefix(kv, "ip="); ok {
				ip = x
			}
			if x, ok := strings.CutPrefix(kv, "port="); ok {
				port = x
			}
		}
		if ip != "" && port != "" {
			replicas = append(replicas, ip+":"+port)
		}
	}
	slices.Sort(replicas)
	return node, replicas, nil
}

// writePartitions prints the table and the per-node summary.
func writePartitions(w io.Writer, ps []partitionInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tSLOT\tNODE\tREPLICAS\tEVENTS\tFENCE")
	byNode := map[string][]string{}
	var nodes []string
	for _, p := range ps {
		slot, reps := "-", "-"
		if p.Slot >= 0 {
			slot = strconv.Itoa(p.Slot)
		}
		if len(p.Replicas) > 0 {
			reps = strings.Join(p.Replicas, ",")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\n", p.Partition, slot, p.Node, reps, p.Events, p.Fence)
		if _, ok := byNode[p.Node]; !ok {
			nodes = append(nodes, p.Node)
		}
		byNode[p.Node] = append(byNode[p.Node], strconv.Itoa(p.Partition))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	slices.Sort(nodes)
	fmt.Fprintf(w, "\n%d partitions on %d master(s):\n", len(ps), len(nodes))
	for _, n := range nodes {
		if _, err := fmt.Fprintf(w, "  %s  %s\n", n, strings.Join(byNode[n], " ")); err != nil {
			return err
		}
	}
	return nil
}
