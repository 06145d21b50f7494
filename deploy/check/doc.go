// Package check holds the tests of lockcoord's operator artefacts in
// deploy/: the Prometheus alerting rules (deploy/prometheus/alerts.yml),
// parsed with Prometheus's own rule parser, and the Grafana dashboard
// (deploy/grafana/lockcoord.json), whose queries are parsed with
// Prometheus's PromQL parser; every metric either names must be one the
// library exports, as its collectors describe themselves. It is a module
// of its own, as benchmarks/ is, so that Prometheus's dependencies stay
// out of lockcoord's go.mod. make lint runs it (make deploy-check).
package check
