package coordinator

import "errors"

// ErrUnavailable reports a store that could not be reached: the network
// path to Redis failed (connection refused or reset, a timeout, a name
// that does not resolve, a closed client). Stores wrap the network error
// with it, and the message names the operation that failed, e.g.
// "redisstore: acquire plan/42: coordinator: store unavailable: dial tcp
// 127.0.0.1:6379: connect: connection refused". It is worth a retry
// later; errors.Is(err, ErrUnavailable) tells it from a refusal
// (ErrConflict, ErrNotHeld) and from bad input (ErrInvalid).
var ErrUnavailable = errors.New("coordinator: store unavailable")
