package coordinator_test

import (
	"testing"

	"github.com/lockcoord/lockcoord/coordinator/storetest"
)

// TestMemStoreConformance runs the conformance suites against the
// reference store, which declares every capability.
func TestMemStoreConformance(t *testing.T) {
	h := storetest.MemHarness{}
	storetest.Run(t, h)
	storetest.RunNotifier(t, h)
	storetest.RunWaitQueue(t, h)
	storetest.RunFairQueue(t, h)
}
