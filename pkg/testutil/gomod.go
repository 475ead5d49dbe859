package testutil

import (
	"os"
	"testing"

	"golang.org/x/mod/modfile"
)

// GoModTools lists the tool directives of the go.mod at path.
func GoModTools(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse(path, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tools []string
	for _, tool := range f.Tool {
		tools = append(tools, tool.Path)
	}
	return tools
}
