package redisstore

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scrapeTimeout bounds the configuration read of one scrape.
const scrapeTimeout = 2 * time.Second

var unsafeDesc = prometheus.NewDesc("lockcoord_redis_config_unsafe",
	"1 when the Redis server's configuration can lose leases (a maxmemory-policy other than noeviction, or one that cannot be read), 0 when safe.",
	[]string{"addr"}, nil)

// configCollector is the gauge of WithMetrics, read at each scrape.
type configCollector struct{ s *Store }

// Describe implements prometheus.Collector.
func (c *configCollector) Describe(ch chan<- *prometheus.Desc) { ch <- unsafeDesc }

// Collect implements prometheus.Collector.
func (c *configCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	scs, _ := c.s.ServerConfigs(ctx) // the servers read, also when another failed
	for _, sc := range scs {
		v := 0.0
		if sc.Check() != nil {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(unsafeDesc, prometheus.GaugeValue, v, sc.Addr)
	}
}
