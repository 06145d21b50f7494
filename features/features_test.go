package features_test

import (
	"testing"

	"github.com/cucumber/godog"
)

// TestFeatures runs every scenario of the *.feature files in this folder,
// each as a subtest. Strict: undefined and pending steps fail the run.
func TestFeatures(t *testing.T) {
	runSuite(t, "lockcoord", "pretty", initScenario)
}

// runSuite runs every scenario of this folder with init, strict, in
// format, as subtests of t, and fails t when one fails.
func runSuite(t *testing.T, name, format string, init func(*godog.ScenarioContext)) {
	t.Helper()
	suite := godog.TestSuite{
		Name:                name,
		ScenarioInitializer: init,
		Options: &godog.Options{
			Format:   format,
			Paths:    []string{"."},
			Strict:   true,
			TestingT: t,
		},
	}
	if suite.Run() != 0 {
		t.Fatalf("godog: scenarios of %s failed", name)
	}
}
