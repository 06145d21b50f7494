// Package scripts embeds the Lua scripts that make lease changes atomic in
// Redis: acquire.lua, renew.lua and release.lua, one per operation. Each
// file begins with its KEYS / ARGV / reply contract. Every key a script
// touches shares the partition's hash tag, so each script runs on one Redis
// Cluster slot; every change appends its event to the partition's stream
// (the audit outbox) in the same script.
//
// The scripts take time from Redis (TIME), never from the caller, and keep
// fencing tokens integer-exact by storing them as decimal strings.
package scripts
