package redisstore

import "testing"

// TestExpireReply: expire.lua's reply {n, more}, and replies of another
// shape (a script that is not expire.lua) as errors.
func TestExpireReply(t *testing.T) {
	if n, more, err := expireReply([]any{int64(3), int64(1)}); n != 3 || !more || err != nil {
		t.Fatalf("expireReply({3, 1}) = %d, %v, %v", n, more, err)
	}
	if n, more, err := expireReply([]any{int64(0), int64(0)}); n != 0 || more || err != nil {
		t.Fatalf("expireReply({0, 0}) = %d, %v, %v", n, more, err)
	}
	for _, v := range [][]any{nil, {int64(1)}, {"x", int64(0)}, {int64(1), "x"}} {
		if _, _, err := expireReply(v); err == nil {
			t.Errorf("expireReply(%v): no error", v)
		}
	}
}
