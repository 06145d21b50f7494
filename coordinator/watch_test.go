package coordinator_test

import (
	"testing"

	"github.com/lockcoord/lockcoord/coordinator/storetest"
)

func TestMemStoreWatcher(t *testing.T) {
	storetest.RunWatcher(t, storetest.MemHarness{})
}
