package ovs

import "testing"

// TestCookieCategoryKnown: every category the agent uses (and learned
// flows) is known; 0 (a flow added by hand) and unused values are not.
func TestCookieCategoryKnown(t *testing.T) {
	for _, c := range []CookieCategory{CookiePipeline, CookiePod, CookieNode, CookieNamespace, CookiePolicy,
		CookieMulticast, CookieEgress, CookieService, CookieLearned} {
		if !c.Known() {
			t.Errorf("category %d not known", c)
		}
	}
	for _, c := range []CookieCategory{0, CookieService + 1, 0x7f, 0xde, 0xff} {
		if c.Known() {
			t.Errorf("category %#x known", uint8(c))
		}
	}
}
