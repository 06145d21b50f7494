package features_test

import (
	"testing"

	"github.com/cucumber/godog"
)

// TestFeatures runs every scenario of the *.feature files in this folder,
// each as a subtest. Strict: undefined and pending steps fail the run.
func TestFeatures(t *testing.T) {
	suite := godog.TestSuite{
		Name:                "lockcoord",
		ScenarioInitializer: initScenario,
		Options: &godog.Options{
			Format:   "pretty",
			Paths:    []string{"."},
			Strict:   true,
			TestingT: t,
		},
	}
	if suite.Run() != 0 {
		t.Fatal("godog: scenarios failed")
	}
}
