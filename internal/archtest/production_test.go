package archtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// devOnly are the packages a production fundd must not link: the dev stack
// and the in-process Kafka broker it starts.
var devOnly = []string{
	module + "/internal/devstack",
	module + "/internal/kafkabroker",
	"github.com/twmb/franz-go/pkg/kfake",
}

// TestProductionFunddLinksNoDevStack builds fundd's import graph as the
// image builds it (-tags nodev) and fails if the dev stack or the
// in-process broker is in it, or if the Dockerfile stops passing the tag.
func TestProductionFunddLinksNoDevStack(t *testing.T) {
	root := moduleRoot(t)
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("the go command is needed to list fundd's imports: %v", err)
		}
	}
	cmd := exec.Command(gobin, "list", "-tags", "nodev", "-deps", "./cmd/fundd")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		for _, bad := range devOnly {
			if d == bad {
				t.Errorf("a production fundd (-tags nodev) links %s", d)
			}
		}
	}
	docker, err := os.ReadFile(filepath.Join(root, "deploy", "docker", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(docker), "-tags nodev -o /out/fundd ./cmd/fundd") {
		t.Error("deploy/docker/Dockerfile does not build fundd with -tags nodev")
	}
}
