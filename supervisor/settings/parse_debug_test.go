package settings

import "testing"

func TestDebugKey(t *testing.T) {
	s, problems := Parse([]byte("debug: true\n"))
	if len(problems) != 0 || !s.Debug {
		t.Fatalf("debug: true gave Debug=%v, problems %v", s.Debug, problems)
	}
	s, problems = Parse([]byte("debug: maybe\n"))
	if len(problems) != 1 || problems[0].Key != "debug" || s.Debug {
		t.Fatalf("debug: maybe gave Debug=%v, problems %v; want one problem naming debug", s.Debug, problems)
	}
}
