package redisstore_test

import (
	"testing"

	"github.com/lockcoord/lockcoord/internal/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }
