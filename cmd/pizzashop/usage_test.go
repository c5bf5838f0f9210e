package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// pizzashop -h, help and --help list every command run dispatches to.
func TestHelpListsEveryCommand(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	var commands []string
	for _, m := range regexp.MustCompile(`case "([a-z]+)"`).FindAllStringSubmatch(string(src), -1) {
		commands = append(commands, m[1])
	}
	if len(commands) < 5 {
		t.Fatalf("found only %v in main.go's dispatch", commands)
	}
	for _, arg := range []string{"-h", "-help", "--help", "help"} {
		var out, errOut bytes.Buffer
		if err := run(t.Context(), []string{arg}, &out, &errOut); err != nil {
			t.Fatalf("pizzashop %s = %v\n%s", arg, err, errOut.String())
		}
		for _, c := range commands {
			if !strings.Contains(out.String(), "pizzashop "+c) && !(c == "run" && strings.Contains(out.String(), "pizzashop [run]")) {
				t.Errorf("pizzashop %s does not list %q:\n%s", arg, c, out.String())
			}
		}
	}
}
