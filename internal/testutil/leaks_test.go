package testutil

import (
	"testing"
	"time"
)

// a goroutine that ends after goleak's own retries gave up (about a
// second) is not a leak: settle waits for it
func TestSettleWaitsForAGoroutineThatEnds(t *testing.T) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		<-stop
	}()
	ends := time.AfterFunc(1500*time.Millisecond, func() { close(stop) })
	defer ends.Stop()
	if err := settle(10 * time.Second); err != nil {
		t.Fatalf("settle = %v, want nil once the goroutine ended", err)
	}
	<-done
}

func TestSettleReportsAGoroutineThatStays(t *testing.T) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		<-stop
	}()
	err := settle(200 * time.Millisecond)
	close(stop)
	<-done
	if err == nil {
		t.Fatal("settle = nil with a goroutine still blocked, want goleak's finding")
	}
}
