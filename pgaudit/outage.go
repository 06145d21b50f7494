package pgaudit

import (
	"errors"
	"time"
)

// outage follows the failed attempts of one of the mirror's operations,
// for the one line that says the service is back when an attempt
// succeeds again.
type outage struct {
	since    time.Time // the first failure
	attempts int       // failed attempts since
	last     error
}

// failed records a failed attempt.
func (o *outage) failed(err error) {
	if o.attempts == 0 {
		o.since = time.Now()
	}
	o.attempts++
	o.last = err
}

// over logs, when attempts failed before this success, one Info line
// naming the service that is back (Postgres or Redis, from the last
// failure), how many attempts failed and how long it was out, with the
// operation what; and forgets the outage.
func (m *Mirror) over(o *outage, what string) {
	if o.attempts == 0 {
		return
	}
	service := "Redis"
	if errors.Is(o.last, ErrPostgres) {
		service = "Postgres"
	}
	m.cfg.log.Info().Str("service", service).Int("failed_attempts", o.attempts).
		Dur("outage", time.Since(o.since)).Msg("pgaudit: " + service + " is back: could " + what + " again")
	*o = outage{}
}
