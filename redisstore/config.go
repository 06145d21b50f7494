package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ErrUnsafeConfig reports a Redis whose configuration can lose leases:
// a maxmemory-policy other than noeviction (Redis may evict a lease, and
// a second owner then gets the resource while the first still works),
// or a policy the store could not read. A Store refuses to run on such a
// Redis unless built with WithEvictionRisk. The error is a *ConfigError.
var ErrUnsafeConfig = errors.New("redisstore: unsafe Redis configuration")

// SafePolicy is the only maxmemory-policy under which Redis never evicts
// a key: at maxmemory it refuses writes instead (the scripts then fail
// and change nothing).
const SafePolicy = "noeviction"

// Where a ServerConfig's policy was read.
const (
	FromConfig    = "CONFIG GET"
	FromInfo      = "INFO memory"
	FromMiniredis = "miniredis" // an in-memory test server that never evicts
)

// ConfigError is a refusal of a Redis server's configuration: the
// setting, its value and why it is unsafe. It wraps ErrUnsafeConfig and,
// when the setting could not be read, the errors of the attempts.
type ConfigError struct {
	Addr    string // the server; a Cluster master's address
	Setting string // "maxmemory-policy"
	Value   string // the value read; "" when it could not be read
	Reason  string // why the value is unsafe
	Err     error  // why the setting could not be read, or nil
}

// Error says what is wrong and how to fix it.
func (e *ConfigError) Error() string {
	val := e.Value
	if val == "" {
		val = "unknown"
	}
	return fmt.Sprintf("%v: Redis at %s: %s is %s: %s", ErrUnsafeConfig, e.Addr, e.Setting, val, e.Reason)
}

// Unwrap returns ErrUnsafeConfig and the cause, if any.
func (e *ConfigError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrUnsafeConfig}
	}
	return []error{ErrUnsafeConfig, e.Err}
}

// ServerConfig is what a Store read of one Redis server's configuration
// (Store.ServerConfigs).
type ServerConfig struct {
	// Addr is the server's address (a Cluster master's, or the client's).
	Addr string `json:"addr"`
	// Version is INFO's redis_version; "" when unknown.
	Version string `json:"version"`
	// Policy is the maxmemory-policy; "" when it could not be read.
	Policy string `json:"maxmemory_policy"`
	// PolicyFrom says where Policy was read: FromConfig, FromInfo or
	// FromMiniredis; "" when it could not be read.
	PolicyFrom string `json:"policy_from"`
	// AOF reports appendonly yes; RDB reports save points. Both false
	// with PersistenceKnown: no persistence (a restart loses every
	// lease, fence and stream). Without CONFIG GET, RDB is unknown.
	AOF              bool `json:"aof"`
	RDB              bool `json:"rdb"`
	PersistenceKnown bool `json:"persistence_known"`
	// ConfigErr and InfoErr are why CONFIG GET and INFO failed (NOPERM
	// for an ACL user without them), or "".
	ConfigErr string `json:"config_error,omitempty"`
	InfoErr   string `json:"info_error,omitempty"`
}

// Check returns nil when the server's maxmemory-policy is noeviction (or
// the server is a miniredis, which never evicts), else a *ConfigError
// saying why the policy can lose leases, or why it could not be read and
// how to let the store read it.
func (c ServerConfig) Check() error {
	if c.Policy == SafePolicy {
		return nil
	}
	e := &ConfigError{Addr: c.Addr, Setting: "maxmemory-policy", Value: c.Policy}
	switch {
	case c.Policy == "":
		e.Err = errors.New("CONFIG GET: " + c.ConfigErr + "; INFO: " + c.InfoErr)
		e.Reason = "the store could not read it (CONFIG GET: " + c.ConfigErr + "; INFO: " + c.InfoErr +
			"); grant the ACL user +config|get or +info, or accept the risk with redisstore.WithEvictionRisk (lockctl doctor reads it as the operator)"
	case strings.HasPrefix(c.Policy, "volatile-"):
		e.Reason = "Redis evicts keys with a TTL under memory pressure, and the leases are the only keys with one: " +
			"an evicted lease is free to a second owner while its holder still works; set maxmemory-policy " + SafePolicy +
			", or accept the risk with redisstore.WithEvictionRisk"
	default:
		e.Reason = "Redis may evict any key under memory pressure: leases, fencing counters, event streams and the partition count; " +
			"an evicted lease is free to a second owner while its holder still works; set maxmemory-policy " + SafePolicy +
			", or accept the risk with redisstore.WithEvictionRisk"
	}
	return e
}

// Problem is Check's refusal in a few words, for a report, or "" when
// the configuration is safe.
func (c ServerConfig) Problem() string {
	switch {
	case c.Check() == nil:
		return ""
	case c.Policy == "":
		return fmt.Sprintf("Redis at %s: cannot read maxmemory-policy (CONFIG GET: %s; INFO: %s): grant +info or +config|get",
			c.Addr, c.ConfigErr, c.InfoErr)
	}
	return fmt.Sprintf("Redis at %s: maxmemory-policy %s can evict leases (a second owner gets a held resource): set %s",
		c.Addr, c.Policy, SafePolicy)
}

// Persistence describes the persistence of the server: "aof", "rdb",
// "aof+rdb", "none", or "aof, rdb unknown"/"unknown" when it could not
// be read in full.
func (c ServerConfig) Persistence() string {
	switch {
	case !c.PersistenceKnown && c.AOF:
		return "aof, rdb unknown"
	case !c.PersistenceKnown:
		return "unknown"
	case c.AOF && c.RDB:
		return "aof+rdb"
	case c.AOF:
		return "aof"
	case c.RDB:
		return "rdb"
	}
	return "none"
}

// ServerConfigs reads the configuration the store relies on from every
// server it writes to: the client's, or each master of a Cluster. Per
// server it sends one pipeline of CONFIG GET maxmemory-policy,
// appendonly and save, and INFO (its default sections); where CONFIG is
// refused (an ACL user without it, a managed Redis that hides it) the
// policy comes from INFO's maxmemory_policy. It returns an error only
// when a server could not be reached; a setting that could not be read
// is left empty (see ServerConfig.Check).
func (s *Store) ServerConfigs(ctx context.Context) ([]ServerConfig, error) {
	if s.cfgErr != nil {
		return nil, s.cfgErr
	}
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		var out []ServerConfig
		var mu sync.Mutex
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			sc, err := readServer(ctx, c, c.Options().Addr)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			out = append(out, sc)
			return nil
		})
		slices.SortFunc(out, func(a, b ServerConfig) int { return strings.Compare(a.Addr, b.Addr) })
		return out, err
	}
	sc, err := readServer(ctx, s.client, serverAddr(s.client))
	if err != nil {
		return nil, err
	}
	return []ServerConfig{sc}, nil
}

// serverAddr names the server of a client that is not a Cluster's.
func serverAddr(c redis.UniversalClient) string {
	if rc, ok := c.(*redis.Client); ok {
		return rc.Options().Addr
	}
	return fmt.Sprintf("%v", c)
}

// readServer reads one server's configuration (see ServerConfigs).
func readServer(ctx context.Context, c redis.UniversalClient, addr string) (ServerConfig, error) {
	sc := ServerConfig{Addr: addr}
	var policy, aof, save *redis.MapStringStringCmd
	var info *redis.StringCmd
	_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		policy = p.ConfigGet(ctx, "maxmemory-policy")
		aof = p.ConfigGet(ctx, "appendonly")
		save = p.ConfigGet(ctx, "save")
		info = p.Info(ctx)
		return nil
	})
	for _, err := range []error{policy.Err(), aof.Err(), save.Err(), info.Err()} {
		if _, replied := errors.AsType[redis.Error](err); err != nil && !replied {
			return sc, failure("redisstore: read the configuration of "+addr, err)
		}
	}
	fields := parseInfo(info.Val())
	sc.Version = fields["redis_version"]
	if err := errors.Join(policy.Err(), aof.Err(), save.Err()); err != nil {
		sc.ConfigErr = oneLine(err)
	} else {
		sc.Policy, sc.PolicyFrom = policy.Val()["maxmemory-policy"], FromConfig
		sc.AOF, sc.RDB, sc.PersistenceKnown = aof.Val()["appendonly"] == "yes", save.Val()["save"] != "", true
	}
	switch {
	case info.Err() != nil:
		sc.InfoErr = oneLine(info.Err())
	case sc.Policy == "" && fields["maxmemory_policy"] != "":
		sc.Policy, sc.PolicyFrom = fields["maxmemory_policy"], FromInfo
		sc.AOF = fields["aof_enabled"] == "1"
	case sc.Policy == "":
		sc.InfoErr = "no maxmemory_policy field"
	}
	if sc.Policy == "" {
		mini, err := isMiniredis(ctx, c)
		if err != nil {
			return sc, failure("redisstore: read the configuration of "+addr, err)
		}
		if mini {
			sc.Policy, sc.PolicyFrom, sc.ConfigErr, sc.InfoErr = SafePolicy, FromMiniredis, "", ""
		}
	}
	if sc.PolicyFrom != FromConfig && sc.PolicyFrom != "" {
		sc.ConfigErr = "" // read elsewhere: not a problem
	}
	return sc, nil
}

// isMiniredis reports whether c is a miniredis (HELLO's server field),
// which has no maxmemory, CONFIG nor INFO memory, and never evicts. It
// asks in the client's own protocol, so the connection stays as it is. A
// server that refuses HELLO is not a miniredis; a HELLO that got no reply
// (the context ended, the connection failed) is an error: the answer is
// unknown, and a policy left unknown would be refused as unsafe.
func isMiniredis(ctx context.Context, c redis.UniversalClient) (bool, error) {
	rc, ok := c.(*redis.Client)
	if !ok {
		return false, nil
	}
	// go-redis sets Protocol (2 or 3) when it builds the client
	v, err := rc.Do(ctx, "hello", rc.Options().Protocol).Result()
	if _, replied := errors.AsType[redis.Error](err); err != nil {
		if replied {
			return false, nil
		}
		return false, err
	}
	switch m := v.(type) {
	case map[any]any: // RESP3
		return m["server"] == "miniredis", nil
	case []any: // RESP2: field, value, ...
		for i := 0; i+1 < len(m); i += 2 {
			if m[i] == "server" {
				return m[i+1] == "miniredis", nil
			}
		}
	}
	return false, nil
}

// parseInfo returns the field:value lines of an INFO reply.
func parseInfo(s string) map[string]string {
	out := map[string]string{}
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out
}

// oneLine is err's message on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// CheckConfig reads the configuration of every server the store writes
// to (ServerConfigs) and returns the first refusal (a *ConfigError,
// errors.Is ErrUnsafeConfig), or an error when a server could not be
// reached. It ignores WithEvictionRisk: it says what is unsafe; the
// option only keeps the store from refusing to run.
func (s *Store) CheckConfig(ctx context.Context) error {
	scs, err := s.ServerConfigs(ctx)
	if err != nil {
		return err
	}
	for _, sc := range scs {
		if err := sc.Check(); err != nil {
			return err
		}
	}
	return nil
}
