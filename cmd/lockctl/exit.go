package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/lockcoord/lockcoord/coordinator"
	"github.com/lockcoord/lockcoord/pgaudit"
	"github.com/lockcoord/lockcoord/redisstore"
)

// Exit statuses of lockctl: one table for every command (exitTable), in
// lockctl --help and docs/operations.md. A status means the same thing
// whichever command returns it. run (and every command that runs a
// command under a lease) exits with the command's own status unless it is
// one of lockctl's (collision, below).
const (
	ExitOK = 0 // success
	// ExitInternal is an unexpected failure: a bug, or a reply lockctl
	// does not understand.
	ExitInternal = 1
	// ExitUsage is bad input or a configuration that does not match the
	// service: an unknown flag or command, a missing argument, a resource
	// or owner that breaks a naming rule, a bad URL, a Postgres database
	// that does not exist, TLS asked of a server without it, a Redis
	// database out of range, a Cluster URL aimed at a standalone server, a
	// partition count other than the one recorded in Redis.
	ExitUsage = 2
	// ExitConflict is a lease outcome: acquire (or run) found the resource
	// held by another owner; renew or release found the lease not held by
	// the owner or expired; inspect found the resource free.
	ExitConflict = 3
	// ExitUnavailable is a backing service (Redis, Postgres) that could
	// not be reached in time, or refused the connection.
	ExitUnavailable = 4
	// ExitLeaseLost is run's status when the lease was lost at any moment
	// while the command ran, whatever the command's own status.
	ExitLeaseLost = 5
	// ExitAuth is a backing service that refused the credentials (user,
	// password, TLS certificate).
	ExitAuth = 6
	// ExitPermission is a backing service that accepted the credentials
	// but refused a command or statement (Redis ACL NOPERM, Postgres
	// permission denied); the message names the permission missing.
	ExitPermission = 7
	// ExitUnhealthy is a check that ran and failed: diagnostics over a
	// threshold, doctor finding an unsafe configuration, demo finding an
	// invariant broken.
	ExitUnhealthy = 8
	// ExitCollision is run's default status when the command exited with
	// a status of lockctl's own (1-8, 125): --collision-status chooses
	// another, 0 passes the command's status through.
	ExitCollision = 125
	// ExitCannotExec is run's status when the command is not executable.
	ExitCannotExec = 126
	// ExitNotFound is run's status when the command was not found.
	ExitNotFound = 127
	// ExitSignal plus N is run's status when the command was killed by
	// signal N, or when signal N interrupted the wait for the lease.
	ExitSignal = 128
)

// exitRow is one row of the table of exit statuses.
type exitRow struct {
	code    string // "3", or "128+N"
	name    string // a word for scripts and docs
	meaning string
}

// exitTable is every exit status of lockctl. lockctl --help prints it,
// docs/operations.md holds it as a Markdown table (TestExitTableInDocs),
// and TestExitStatuses produces every row.
var exitTable = []exitRow{
	{"0", "ok", "success (diagnostics and doctor: healthy)"},
	{"1", "internal", "internal error: a bug, or a reply lockctl does not understand"},
	{"2", "usage", "bad flag, argument, resource, owner or URL, or a URL that does not match the service: unknown database, TLS asked of a server without it, Redis database out of range, a Cluster URL aimed at a standalone server, a partition count other than Redis's"},
	{"3", "conflict", "held by another owner (acquire, run, lead --wait), not held by the owner or expired (renew, release), free (inspect), vacant (leader)"},
	{"4", "unreachable", "Redis or Postgres did not answer in time or refused the connection"},
	{"5", "lease-lost", "run, lead: the lease (lead: the office) was lost (expired, forced, taken over) while the command ran"},
	{"6", "credentials", "Redis or Postgres refused the credentials (user, password, TLS certificate)"},
	{"7", "permission", "Redis or Postgres accepted the credentials but refused a command (ACL NOPERM, permission denied); the message names it"},
	{"8", "unhealthy", "a check failed: diagnostics over a threshold, doctor found an unsafe configuration (or a command refused a Redis that can evict leases), demo found an invariant broken"},
	{"125", "collision", "run, lead: the command exited with one of the statuses above (1-8) or 125; its own status is on stderr (--collision-status)"},
	{"126", "cannot-exec", "run, lead: the command could not be executed"},
	{"127", "not-found", "run, lead: the command was not found"},
	{"128+N", "signal", "run, lead: the command was killed by signal N, or signal N interrupted the wait for the lease"},
}

// commonExits are the statuses every command that reaches Redis or
// Postgres may return, for the Exit status paragraph of its help.
const commonExits = "2 bad input, 4 unreachable, 6 credentials refused, 7 permission refused, 1 internal error (the table: lockctl --help)"

// exitStatusHelp is the table shown in the help of the root command.
var exitStatusHelp = func() string {
	var b strings.Builder
	b.WriteString("Exit statuses (every command; docs/operations.md):\n")
	for _, r := range exitTable {
		for i, line := range wrap(r.meaning, 58) {
			code, name := r.code, r.name
			if i > 0 {
				code, name = "", ""
			}
			fmt.Fprintf(&b, "  %-6s %-12s %s\n", code, name, line)
		}
	}
	b.WriteString("  Any other status of run is the command's own.")
	return b.String()
}()

// wrap cuts s into lines of at most width bytes, at spaces.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}

// exitTableMarkdown is the table as docs/operations.md shows it.
func exitTableMarkdown() string {
	var b strings.Builder
	b.WriteString("| Status | Name | Meaning |\n|---|---|---|\n")
	for _, r := range exitTable {
		fmt.Fprintf(&b, "| %s | `%s` | %s |\n", r.code, r.name, r.meaning)
	}
	return b.String()
}

// commandStatus maps the exit status of run's command: a status of
// lockctl's own (1-8, 125) becomes collision (0: unchanged), reported by
// the returned note.
func commandStatus(status, collision int) (int, string) {
	if collision == 0 || !(status >= ExitInternal && status <= ExitUnhealthy || status == ExitCollision) {
		return status, ""
	}
	return collision, fmt.Sprintf("the command exited with status %d, one of lockctl's own: exit status %d instead (--collision-status; 0 keeps the command's)",
		status, collision)
}

// exitError carries an explicit exit status; its message, if any, is
// printed on stderr.
type exitError struct {
	code int
	err  error // nil: exit silently
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitWith returns an error that makes lockctl exit with code, printing
// err (nil: nothing).
func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// usageError is bad command line input.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// serviceError names the service an error came from, and its address.
type serviceError struct {
	service string // "Redis", "Postgres"
	addr    string
	err     error
}

func (e *serviceError) Error() string { return e.err.Error() }
func (e *serviceError) Unwrap() error { return e.err }

// classify maps an error to an exit status and the one line printed on
// stderr. redisAddr names the Redis server for network errors that were
// not wrapped in a serviceError.
func classify(err error, redisAddr, pgAddr string) (int, string) {
	if err == nil {
		return ExitOK, ""
	}
	var xe *exitError
	if errors.As(err, &xe) {
		if xe.err == nil {
			return xe.code, ""
		}
		return xe.code, xe.err.Error()
	}
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		return ExitUsage, ue.msg
	case errors.Is(err, coordinator.ErrLeaseLost):
		return ExitLeaseLost, err.Error()
	case errors.Is(err, coordinator.ErrInvalid), errors.Is(err, redisstore.ErrPartitionMismatch):
		return ExitUsage, err.Error()
	case errors.Is(err, redisstore.ErrUnsafeConfig): // lockctl doctor says more
		return ExitUnhealthy, err.Error()
	case errors.Is(err, coordinator.ErrConflict), errors.Is(err, coordinator.ErrNotHeld),
		errors.Is(err, coordinator.ErrExpired):
		return ExitConflict, err.Error()
	}
	at := serviceOf(err, redisAddr, pgAddr)
	if code, msg, ok := classifyService(err, at); ok {
		return code, msg
	}
	return ExitInternal, err.Error()
}

// serviceOf names the service err came from and its address: "Redis at
// host:port", "Postgres at host:port/db".
func serviceOf(err error, redisAddr, pgAddr string) string {
	service, addr := "Redis", redisAddr
	var se *serviceError
	var ce *pgconn.ConnectError
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &se):
		service, addr = se.service, se.addr
	case errors.As(err, &ce), errors.As(err, &pe), errors.Is(err, pgaudit.ErrPostgres):
		service, addr = "Postgres", pgAddr
	}
	if addr == "" {
		return service
	}
	return service + " at " + addr
}

// classifyService maps an error of Redis or Postgres (at names it) to
// the status of its cause: a configuration that does not match the
// service, refused credentials, a refused command, an unreachable
// service. ok is false for other errors.
func classifyService(err error, at string) (code int, msg string, ok bool) {
	if msg, ok := mismatch(err, at); ok {
		return ExitUsage, msg, true
	}
	var the *tlsHandshakeError
	var pe *pgconn.PgError
	errors.As(err, &pe)
	switch {
	case errors.As(err, &the):
		if the.plaintext {
			return ExitUsage, fmt.Sprintf("%s: TLS handshake failed: the server speaks plain text, not TLS: use redis:// instead of rediss://", at), true
		}
		if isCertError(the.err) {
			return ExitAuth, fmt.Sprintf("%s: TLS handshake failed: %v", at, the.err), true
		}
		return ExitUnavailable, fmt.Sprintf("%s: TLS handshake failed: %v", at, the.err), true
	case isCertError(err):
		return ExitAuth, fmt.Sprintf("%s: TLS handshake failed: %v", at, rootCause(err)), true
	case isPermissionError(err):
		return ExitPermission, permissionMessage(err, at, pe), true
	case isAuthError(err):
		cause := rootCause(err)
		if pe != nil {
			cause = pe
		}
		return ExitAuth, fmt.Sprintf("%s refused the credentials: %v", at, cause), true
	case errors.Is(err, pgaudit.ErrPostgres) && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		// a Postgres that stalls: the mirror gave its batch up
		return ExitUnavailable, fmt.Sprintf("%s did not answer in time: %v", at, err), true
	case isUnreachable(err):
		return ExitUnavailable, fmt.Sprintf("cannot reach %s: %v", at, rootCause(err)), true
	}
	return 0, "", false
}

// mismatch recognises a URL that does not match the service it reaches:
// a Postgres database that does not exist, TLS asked of a Postgres
// without it, a Redis database out of range, a Cluster URL aimed at a
// standalone Redis, a standalone URL aimed at a Cluster node.
func mismatch(err error, at string) (string, bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "3D000" { // invalid_catalog_name
		return fmt.Sprintf("%s: %s (SQLSTATE 3D000): check the database of --database-url", at, pe.Message), true
	}
	m := err.Error()
	switch {
	case strings.Contains(m, "server refused TLS connection"):
		return fmt.Sprintf("%s does not accept TLS, and --database-url asks for it (sslmode=require, verify-ca or verify-full): use sslmode=disable or prefer, or enable TLS on the server", at), true
	case strings.Contains(m, "DB index is out of range"):
		return fmt.Sprintf("%s has no such database (ERR DB index is out of range): check the database number of --redis-url (0 to the server's databases - 1)", at), true
	case strings.Contains(m, "cluster support disabled"):
		return fmt.Sprintf("%s is a standalone server, not a Cluster (ERR This instance has cluster support disabled): use redis://host:port, without +cluster or several addr parameters", at), true
	case strings.HasPrefix(rootCause(err).Error(), "MOVED ") || strings.Contains(m, ": MOVED "):
		return fmt.Sprintf("%s is a Cluster node (it answered MOVED): use redis+cluster://host:port", at), true
	}
	return "", false
}

// isAuthError reports refused credentials.
func isAuthError(err error) bool {
	if redis.IsAuthError(err) {
		return true
	}
	var re redis.Error
	if errors.As(err, &re) {
		m := re.Error()
		return strings.HasPrefix(m, "ERR AUTH") || strings.HasPrefix(m, "ERR invalid password") ||
			strings.HasPrefix(m, "WRONGPASS") || strings.HasPrefix(m, "NOAUTH")
	}
	var pa interface{ SQLState() string }
	if errors.As(err, &pa) {
		switch pa.SQLState() {
		case "28000", "28P01": // invalid authorization, invalid password
			return true
		}
	}
	return false
}

// isPermissionError reports a command or statement refused to
// accepted credentials.
func isPermissionError(err error) bool {
	if redis.IsPermissionError(err) {
		return true
	}
	var re redis.Error
	if errors.As(err, &re) && strings.HasPrefix(re.Error(), "NOPERM") {
		return true
	}
	var pa interface{ SQLState() string }
	return errors.As(err, &pa) && pa.SQLState() == "42501" // insufficient_privilege
}

// nopermCommand finds the command of a NOPERM reply: "NOPERM User u has
// no permissions to run the 'hgetall' command".
var nopermCommand = regexp.MustCompile(`run the '([^']+)' command`)

// permissionMessage names the permission a refused command lacks.
func permissionMessage(err error, at string, pe *pgconn.PgError) string {
	if pe != nil {
		return fmt.Sprintf("%s refused a statement: %s (SQLSTATE 42501): grant the role that privilege (docs/operations.md, Postgres roles)", at, pe.Message)
	}
	var re redis.Error
	m := err.Error()
	if errors.As(err, &re) {
		m = re.Error()
	}
	switch sub := nopermCommand.FindStringSubmatch(m); {
	case sub != nil:
		return fmt.Sprintf("%s refused a command: %s: the ACL user needs +%s (docs/operations.md, Redis ACL users)", at, m, sub[1])
	case strings.Contains(m, "channel"):
		return fmt.Sprintf("%s refused a command: %s: the ACL user needs the channel pattern &<prefix>:* (docs/operations.md, Redis ACL users)", at, m)
	case strings.Contains(m, "key"):
		return fmt.Sprintf("%s refused a command: %s: the ACL user needs the key pattern ~<prefix>:* (docs/operations.md, Redis ACL users)", at, m)
	}
	return fmt.Sprintf("%s refused a command: %s (docs/operations.md, Redis ACL users)", at, m)
}

// isCertError reports a TLS certificate that did not verify.
func isCertError(err error) bool {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var ve *tls.CertificateVerificationError
	return errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &ve)
}

// isUnreachable reports an error of the network path to a service: the
// connection was refused, reset or timed out, or the name did not resolve.
func isUnreachable(err error) bool {
	var oe *net.OpError
	var dnse *net.DNSError
	var te *tls.RecordHeaderError
	return errors.As(err, &oe) || errors.As(err, &dnse) || errors.As(err, &te) ||
		errors.Is(err, coordinator.ErrUnavailable) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, redis.ErrClosed)
}

// rootCause returns the innermost error of a chain of single wraps, for a
// message that says what failed without repeating every layer.
func rootCause(err error) error {
	for {
		var oe *net.OpError
		if errors.As(err, &oe) {
			return oe
		}
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// oneLine flattens a message onto one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
