// Package testseed gives randomised tests their seed: FUND_TEST_SEED when
// set, to replay a failure exactly, the clock otherwise; either way the
// seed is logged first, with the command that replays it.
//
//	func TestModel(t *testing.T) {
//		rng := rand.New(rand.NewPCG(testseed.Seed(t), 0))
//		...
//	}
package testseed
