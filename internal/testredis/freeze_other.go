//go:build !unix

package testredis

import "os"

// freezeSignals are missing outside Unix: Freeze and Thaw fail.
var freezeSignals [2]os.Signal
