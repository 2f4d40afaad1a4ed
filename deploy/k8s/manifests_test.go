package k8s

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// overlays are the environments users apply; the base alone is not one.
var overlays = []string{"dev", "prod"}

// object is the part of a rendered manifest the checks read. Fields of
// every kind the overlays render share it; absent ones stay zero.
type object struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   objectMeta        `json:"metadata"`
	Data       map[string]string `json:"data"`
	StringData map[string]string `json:"stringData"`
	Spec       struct {
		Replicas    *int            `json:"replicas"`
		Selector    rawDoc          `json:"selector"`
		Template    podTemplate     `json:"template"`
		JobTemplate rawDoc          `json:"jobTemplate"`
		ScaleTarget *scaleTargetRef `json:"scaleTargetRef"`
		Triggers    []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
		// PodDisruptionBudget
		MinAvailable   any `json:"minAvailable"`
		MaxUnavailable any `json:"maxUnavailable"`
		// KafkaTopic
		Partitions int            `json:"partitions"`
		Config     map[string]any `json:"config"`
		// Kafka
		Kafka *struct {
			Config map[string]any `json:"config"`
		} `json:"kafka"`
		// CloudNativePG Cluster
		Instances  int    `json:"instances"`
		ImageName  string `json:"imageName"`
		PostgreSQL *struct {
			Synchronous *struct {
				Method         string `json:"method"`
				Number         int    `json:"number"`
				DataDurability string `json:"dataDurability"`
			} `json:"synchronous"`
			Parameters map[string]string `json:"parameters"`
		} `json:"postgresql"`
		Bootstrap *struct {
			InitDB *struct {
				Database string `json:"database"`
				Owner    string `json:"owner"`
			} `json:"initdb"`
		} `json:"bootstrap"`
		Managed *struct {
			Roles []managedRole `json:"roles"`
		} `json:"managed"`
		// CloudNativePG Cluster and Strimzi KafkaNodePool
		Resources *resources `json:"resources"`
		// NetworkPolicy
		PodSelector *labelSelector `json:"podSelector"`
		PolicyTypes []string       `json:"policyTypes"`
	} `json:"spec"`
}

// managedRole is a role a CloudNativePG Cluster keeps in its database.
type managedRole struct {
	Name           string `json:"name"`
	Ensure         string `json:"ensure"`
	Login          bool   `json:"login"`
	Superuser      bool   `json:"superuser"`
	CreateRole     bool   `json:"createrole"`
	CreateDB       bool   `json:"createdb"`
	BypassRLS      bool   `json:"bypassrls"`
	PasswordSecret *struct {
		Name string `json:"name"`
	} `json:"passwordSecret"`
}

// rawDoc is a sub-document decoded again when a check needs it.
type rawDoc = map[string]any

type objectMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
}

type scaleTargetRef struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

type labelSelector struct {
	MatchLabels      map[string]string `json:"matchLabels"`
	MatchExpressions []any             `json:"matchExpressions"`
}

type podTemplate struct {
	Metadata objectMeta `json:"metadata"`
	Spec     podSpec    `json:"spec"`
}

type podSpec struct {
	InitContainers []container `json:"initContainers"`
	Containers     []container `json:"containers"`
}

type container struct {
	Name    string   `json:"name"`
	Image   string   `json:"image"`
	Command []string `json:"command"`
	Args    []string `json:"args"`
	Env     []envVar `json:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `json:"name"`
		} `json:"configMapRef"`
		SecretRef *struct {
			Name string `json:"name"`
		} `json:"secretRef"`
	} `json:"envFrom"`
	Ports           []containerPort `json:"ports"`
	Resources       *resources      `json:"resources"`
	ReadinessProbe  *probe          `json:"readinessProbe"`
	LivenessProbe   *probe          `json:"livenessProbe"`
	SecurityContext *struct {
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
	} `json:"securityContext"`
}

type containerPort struct {
	Name          string `json:"name"`
	ContainerPort int    `json:"containerPort"`
}

type envVar struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `json:"name"`
			Key  string `json:"key"`
		} `json:"secretKeyRef"`
		ConfigMapKeyRef any `json:"configMapKeyRef"`
		FieldRef        any `json:"fieldRef"`
	} `json:"valueFrom"`
}

type resources struct {
	Requests map[string]any `json:"requests"`
	Limits   map[string]any `json:"limits"`
}

type probe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port"`
	} `json:"httpGet"`
	GRPC      any `json:"grpc"`
	TCPSocket any `json:"tcpSocket"`
	Exec      any `json:"exec"`
}

// kustomizeMu serialises kustomize builds (see render).
var kustomizeMu sync.Mutex

// render builds one overlay with kustomize's own Go API, as `kustomize
// build` would, and decodes every resource.
func render(t *testing.T, overlay string) []object {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("overlays", overlay))
	if err != nil {
		t.Fatal(err)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	// kustomize loads its OpenAPI schema into package globals on first use,
	// unguarded: two builds at once race on it (the race detector saw it),
	// so builds run one at a time while the checks stay parallel.
	kustomizeMu.Lock()
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	kustomizeMu.Unlock()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", overlay, err)
	}
	var out []object
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		var o object
		if err := yaml.Unmarshal(b, &o); err != nil {
			t.Fatalf("%s: decode: %v\n%s", r.CurId(), err, b)
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		t.Fatalf("%s rendered nothing", overlay)
	}
	return out
}

// workload is a pod-creating object with its pod template.
type workload struct {
	obj  object
	pods podTemplate
}

func (w workload) id() string { return w.obj.Kind + "/" + w.obj.Metadata.Name }

func workloads(t *testing.T, objs []object) []workload {
	t.Helper()
	var out []workload
	for _, o := range objs {
		switch o.Kind {
		case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
			out = append(out, workload{o, o.Spec.Template})
		case "CronJob":
			// spec.jobTemplate.spec.template: decode the nested template.
			b, err := yaml.Marshal(o.Spec.JobTemplate)
			if err != nil {
				t.Fatal(err)
			}
			var jt struct {
				Spec struct {
					Template podTemplate `json:"template"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(b, &jt); err != nil {
				t.Fatal(err)
			}
			out = append(out, workload{o, jt.Spec.Template})
		case "Pod":
			t.Errorf("bare Pod %s: use a controller", o.Metadata.Name)
		}
	}
	return out
}

func forEachOverlay(t *testing.T, check func(t *testing.T, objs []object)) {
	for _, ov := range overlays {
		t.Run(ov, func(t *testing.T) {
			t.Parallel()
			check(t, render(t, ov))
		})
	}
}

func TestOverlaysRender(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []object) {
		kinds := map[string]int{}
		for _, o := range objs {
			kinds[o.Kind]++
			if o.Metadata.Name == "" {
				t.Errorf("%s without a name", o.Kind)
			}
			if clusterScoped[o.Kind] {
				continue
			}
			if o.Metadata.Namespace != "fund" {
				t.Errorf("%s/%s in namespace %q, want fund", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
			}
		}
		// What the issue asks the manifests to contain.
		for kind, least := range map[string]int{
			"Deployment": 4, "HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 3,
			"ScaledObject": 1, "Kafka": 1, "KafkaNodePool": 1, "KafkaTopic": 2,
			"Cluster": 2, "NetworkPolicy": 4, "ConfigMap": 1, "Service": 2,
		} {
			if kinds[kind] < least {
				t.Errorf("%d %s, want at least %d", kinds[kind], kind, least)
			}
		}
	})
}

var clusterScoped = map[string]bool{"Namespace": true, "PriorityClass": true, "ClusterRole": true, "ClusterRoleBinding": true}

// Every container asks for and is capped in CPU and memory, so the
// scheduler can place it and one runaway pod cannot starve a node.
func TestResourcesOnEveryContainer(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []object) {
		for _, w := range workloads(t, objs) {
			for _, c := range slices.Concat(w.pods.Spec.InitContainers, w.pods.Spec.Containers) {
				checkResources(t, w.id()+" container "+c.Name, c.Resources)
			}
		}
		// The operators' pods get theirs from the custom resources.
		for _, o := range objs {
			if o.Kind == "Cluster" || o.Kind == "KafkaNodePool" {
				checkResources(t, o.Kind+"/"+o.Metadata.Name, o.Spec.Resources)
			}
		}
	})
}

func checkResources(t *testing.T, what string, r *resources) {
	t.Helper()
	if r == nil {
		t.Errorf("%s: no resources", what)
		return
	}
	for _, res := range []string{"cpu", "memory"} {
		if r.Requests[res] == nil {
			t.Errorf("%s: no %s request", what, res)
		}
		if r.Limits[res] == nil {
			t.Errorf("%s: no %s limit", what, res)
		}
	}
}

// Every long-running container that serves something is probed. One that
// serves HTTP (a port named http: gateway, ledger owner, recon serve
// /healthz, /readyz and /metrics) is probed over HTTP: readiness on /readyz
// takes it out of the Service while it cannot serve, liveness on /healthz
// restarts it when it hangs. One that serves only gRPC gets a gRPC or TCP
// probe. One that serves nothing (fundd settle, a scheduler loop that
// exits on failure) has nothing to probe.
func TestProbes(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []object) {
		for _, w := range workloads(t, objs) {
			if w.obj.Kind == "Job" || w.obj.Kind == "CronJob" {
				continue // runs to completion; nothing routes to it
			}
			for _, c := range w.pods.Spec.Containers {
				what := w.id() + " container " + c.Name
				if slices.ContainsFunc(c.Ports, func(p containerPort) bool { return p.Name == "http" }) {
					checkProbe(t, what, "readiness", c.ReadinessProbe, "/readyz")
					checkProbe(t, what, "liveness", c.LivenessProbe, "/healthz")
					continue
				}
				if len(c.Ports) == 0 {
					continue
				}
				for kind, p := range map[string]*probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
					if p == nil || (p.HTTPGet == nil && p.GRPC == nil && p.TCPSocket == nil && p.Exec == nil) {
						t.Errorf("%s: no %s probe", what, kind)
					}
				}
			}
		}
	})
}

func checkProbe(t *testing.T, what, kind string, p *probe, path string) {
	t.Helper()
	switch {
	case p == nil:
		t.Errorf("%s: no %s probe", what, kind)
	case p.HTTPGet == nil:
		t.Errorf("%s: %s probe is not an HTTP GET", what, kind)
	case p.HTTPGet.Path != path:
		t.Errorf("%s: %s probe on %q, want %q", what, kind, p.HTTPGet.Path, path)
	}
}

// A workload that runs more than one pod, or that an autoscaler may grow
// past one, has a PodDisruptionBudget selecting its pods, so a node drain
// cannot take them all at once.
func TestReplicatedWorkloadsHaveDisruptionBudgets(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []object) {
		scaled := map[string]bool{}
		for _, o := range objs {
			switch o.Kind {
			case "HorizontalPodAutoscaler", "ScaledObject":
				if o.Spec.ScaleTarget == nil {
					t.Errorf("%s/%s without scaleTargetRef", o.Kind, o.Metadata.Name)
					continue
				}
				scaled[o.Spec.ScaleTarget.Name] = true
			}
		}
		var pdbs []object
		for _, o := range objs {
			if o.Kind == "PodDisruptionBudget" {
				pdbs = append(pdbs, o)
				if o.Spec.MinAvailable == nil && o.Spec.MaxUnavailable == nil {
					t.Errorf("PodDisruptionBudget/%s sets neither minAvailable nor maxUnavailable", o.Metadata.Name)
				}
			}
		}
		for _, w := range workloads(t, objs) {
			if w.obj.Kind != "Deployment" && w.obj.Kind != "StatefulSet" {
				continue
			}
			replicas := 1
			if w.obj.Spec.Replicas != nil {
				replicas = *w.obj.Spec.Replicas
			}
			if replicas <= 1 && !scaled[w.obj.Metadata.Name] {
				continue
			}
			covered := slices.ContainsFunc(pdbs, func(p object) bool {
				return selects(p.Spec.Selector, w.pods.Metadata.Labels)
			})
			if !covered {
				t.Errorf("%s (replicas %d, autoscaled %v) has no PodDisruptionBudget selecting its pods", w.id(), replicas, scaled[w.obj.Metadata.Name])
			}
		}
	})
}

// selects reports whether a matchLabels-only selector matches labels.
func selects(sel rawDoc, labels map[string]string) bool {
	ml, _ := sel["matchLabels"].(map[string]any)
	if len(ml) == 0 || sel["matchExpressions"] != nil {
		return false // the manifests use plain matchLabels; anything else is a mistake here
	}
	for k, v := range ml {
		if labels[k] != fmt.Sprint(v) {
			return false
		}
	}
	return true
}

// Images are pinned: a tag that is not "latest", or a digest.
func TestImagesPinned(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []object) {
		var images []string
		for _, w := range workloads(t, objs) {
			for _, c := range slices.Concat(w.pods.Spec.InitContainers, w.pods.Spec.Containers) {
				images = append(images, c.Image)
			}
		}
		for _, o := range objs {
			if o.Kind == "Cluster" {
				images = append(images, o.Spec.ImageName)
			}
		}
		for _, img := range images {
			if err := pinned(img); err != nil {
				t.Error(err)
			}
		}
	})
}

func pinned(image string) error {
	if image == "" {
		return fmt.Errorf("empty image")
	}
	if strings.Contains(image, "@sha256:") {
		return nil
	}
	// The tag follows the last colon after the last slash (a registry
	// host may carry a port).
	name := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(name, ":")
	if i < 0 {
		return fmt.Errorf("image %q has no tag (it would be :latest)", image)
	}
	if tag := name[i+1:]; tag == "" || tag == "latest" {
		return fmt.Errorf("image %q uses tag %q", image, tag)
	}
	return nil
}

func TestPinnedRule(t *testing.T) {
	for img, ok := range map[string]bool{
		"fund:dev": true, "registry.example.com:5000/fund/fund:0.1.0": true,
		"fund@sha256:0123": true, "fund": false, "fund:latest": false,
		"registry.example.com:5000/fund/fund": false, "a/b:latest": false,
	} {
		if err := pinned(img); (err == nil) != ok {
			t.Errorf("pinned(%q) = %v, want ok %v", img, err, ok)
		}
	}
}

// secretLike finds what must only ever come from a Secret: a URL DSN with a
// password, a keyword DSN with one, a PEM key.
var secretLike = regexp.MustCompile(`(?i)://[^/\s:@]+:[^/\s@]+@|password\s*=|-----BEGIN [A-Z ]*PRIVATE KEY`)

// secretNames are environment variable names whose value is a credential.
var secretNames = regexp.MustCompile(`(?i)(DSN|PASSWORD|SECRET|TOKEN|JWT|_KEY$)`)

// argCredentials are the arguments (workload name, argument) allowed to
// carry a credential by reference, with the reason. Keep it short: each
// entry is a flag that should read the environment instead.
var argCredentials = map[string]string{}

// onlyRefs matches a value made only of $(VAR) references and separators.
var onlyRefs = regexp.MustCompile(`^(\$\([A-Z0-9_]+\)[,;\s]*)+$`)

// No secret sits in plain configuration: not in a ConfigMap, not in an env
// value, not in arguments; credentials reach containers only through
// secretKeyRef (Secrets are made out of band or by CloudNativePG).
func TestNoSecretInPlainConfig(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []object) {
		for _, o := range objs {
			switch o.Kind {
			case "ConfigMap":
				for k, v := range o.Data {
					if secretLike.MatchString(v) || (secretNames.MatchString(k) && !onlyRefs.MatchString(v)) {
						t.Errorf("ConfigMap/%s key %s holds a secret", o.Metadata.Name, k)
					}
				}
			case "Secret":
				t.Errorf("Secret/%s is rendered from the repository; create secrets out of band", o.Metadata.Name)
			}
		}
		for _, w := range workloads(t, objs) {
			for _, c := range slices.Concat(w.pods.Spec.InitContainers, w.pods.Spec.Containers) {
				what := w.id() + " container " + c.Name
				for _, a := range slices.Concat(c.Command, c.Args) {
					if secretLike.MatchString(a) {
						t.Errorf("%s: argument %q holds a secret", what, a)
					}
					for _, m := range varRef.FindAllStringSubmatch(a, -1) {
						if secretNames.MatchString(m[1]) && argCredentials[w.obj.Metadata.Name+" "+a] == "" {
							t.Errorf("%s: argument %q puts a credential on the command line (visible in ps); use the environment", what, a)
						}
					}
				}
				for _, e := range c.Env {
					switch {
					case secretLike.MatchString(e.Value):
						t.Errorf("%s: env %s holds a secret", what, e.Name)
					case secretNames.MatchString(e.Name) && e.ValueFrom == nil && !onlyRefs.MatchString(e.Value):
						t.Errorf("%s: env %s is a credential given as a plain value", what, e.Name)
					case secretNames.MatchString(e.Name) && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef == nil:
						t.Errorf("%s: env %s is a credential not read from a Secret", what, e.Name)
					}
				}
			}
		}
	})
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z0-9_]+)\)`)

// Kubernetes expands $(VAR) in env values only from variables defined
// before them, and in arguments from any; a reference it cannot resolve is
// passed on literally, which would start a process with "$(FUND_...)" as a
// DSN. Every reference must resolve.
func TestEnvReferencesResolve(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []object) {
		configKeys := map[string]map[string]bool{}
		for _, o := range objs {
			if o.Kind == "ConfigMap" {
				keys := map[string]bool{}
				for k := range o.Data {
					keys[k] = true
				}
				configKeys[o.Metadata.Name] = keys
			}
		}
		for _, w := range workloads(t, objs) {
			for _, c := range w.pods.Spec.Containers {
				what := w.id() + " container " + c.Name
				defined := map[string]bool{}
				for _, ef := range c.EnvFrom {
					if ef.ConfigMapRef == nil {
						continue
					}
					keys, ok := configKeys[ef.ConfigMapRef.Name]
					if !ok {
						t.Errorf("%s: envFrom ConfigMap %s is not rendered", what, ef.ConfigMapRef.Name)
					}
					for k := range keys {
						defined[k] = true
					}
				}
				for _, e := range c.Env {
					for _, m := range varRef.FindAllStringSubmatch(e.Value, -1) {
						if !defined[m[1]] {
							t.Errorf("%s: env %s refers to $(%s) before it is defined", what, e.Name, m[1])
						}
					}
					defined[e.Name] = true
				}
				for _, a := range slices.Concat(c.Command, c.Args) {
					for _, m := range varRef.FindAllStringSubmatch(a, -1) {
						if !defined[m[1]] {
							t.Errorf("%s: argument %q refers to undefined $(%s)", what, a, m[1])
						}
					}
				}
			}
		}
	})
}

// Kafka keeps every acknowledged event on two brokers at least; Postgres in
// production acknowledges a commit only once a standby has it.
func TestDurability(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []object) {
		for _, o := range objs {
			switch o.Kind {
			case "KafkaTopic":
				if r := o.Spec.Replicas; r == nil || *r < 3 {
					t.Errorf("KafkaTopic/%s: replicas %v, want 3", o.Metadata.Name, o.Spec.Replicas)
				}
				if got := fmt.Sprint(o.Spec.Config["min.insync.replicas"]); got != "2" {
					t.Errorf("KafkaTopic/%s: min.insync.replicas %s, want 2", o.Metadata.Name, got)
				}
			case "Kafka":
				cfg := o.Spec.Kafka.Config
				for k, want := range map[string]string{
					"default.replication.factor": "3", "min.insync.replicas": "2",
					"unclean.leader.election.enable": "false",
				} {
					if got := fmt.Sprint(cfg[k]); got != want {
						t.Errorf("Kafka/%s: %s = %s, want %s", o.Metadata.Name, k, got, want)
					}
				}
			case "KafkaNodePool":
				if r := o.Spec.Replicas; r == nil || *r < 3 {
					t.Errorf("KafkaNodePool/%s: %v brokers, want 3", o.Metadata.Name, o.Spec.Replicas)
				}
			case "ScaledObject":
				for _, tr := range o.Spec.Triggers {
					if tr.Type != "kafka" || tr.Metadata["consumerGroup"] == "" || tr.Metadata["lagThreshold"] == "" {
						t.Errorf("ScaledObject/%s: trigger %+v, want kafka consumer lag", o.Metadata.Name, tr)
					}
				}
			}
		}
	})
	objs := render(t, "prod")
	groups := 0
	for _, o := range objs {
		if o.Kind != "Cluster" {
			continue
		}
		groups++
		pg := o.Spec.PostgreSQL
		if o.Spec.Instances < 3 || pg == nil || pg.Synchronous == nil || pg.Synchronous.Number < 1 || pg.Synchronous.DataDurability != "required" {
			t.Errorf("prod Cluster/%s: %d instances, synchronous %+v; want 3 with a required synchronous standby", o.Metadata.Name, o.Spec.Instances, pg)
		}
	}
	if groups < 2 {
		t.Errorf("prod has %d Postgres shard groups", groups)
	}
}

// Ingress is denied by default; every role has a policy letting in only
// whom it serves.
func TestNetworkPolicies(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []object) {
		denyAll := false
		covered := map[string]bool{}
		for _, o := range objs {
			if o.Kind != "NetworkPolicy" || o.Spec.PodSelector == nil {
				continue
			}
			sel := o.Spec.PodSelector
			if len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0 && slices.Contains(o.Spec.PolicyTypes, "Ingress") {
				denyAll = true
			}
			if n := sel.MatchLabels["app.kubernetes.io/name"]; n != "" {
				covered[n] = true
			}
			for _, e := range sel.MatchExpressions {
				m, _ := e.(map[string]any)
				if m["key"] == "app.kubernetes.io/name" {
					vals, _ := m["values"].([]any)
					for _, v := range vals {
						covered[fmt.Sprint(v)] = true
					}
				}
			}
		}
		if !denyAll {
			t.Error("no default-deny ingress NetworkPolicy")
		}
		for _, w := range workloads(t, objs) {
			if n := w.pods.Metadata.Labels["app.kubernetes.io/name"]; !covered[n] {
				t.Errorf("%s: no NetworkPolicy selects app.kubernetes.io/name=%s", w.id(), n)
			}
		}
	})
}

// The database roles (docs/operations.md): each Postgres cluster is owned
// by the owner role and keeps a plain login service role; only the
// migration step (a Job or an initContainer running `fundd migrate`)
// reads the owner's secrets, once for every cluster, and grants the
// service role; every service reads only the service role's secrets, so
// no running service could rewrite the journal or drop what protects it.
const (
	ownerRole   = "fund_owner"
	serviceRole = "fund_service"
)

func TestDatabaseRoles(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []object) {
		ownerSecrets, serviceSecrets := map[string]bool{}, map[string]bool{}
		for _, o := range objs {
			if o.Kind != "Cluster" {
				continue
			}
			checkClusterRoles(t, o)
			ownerSecrets[o.Metadata.Name+"-app"] = true
			serviceSecrets[o.Metadata.Name+"-service"] = true
		}
		migrations := 0
		for _, w := range workloads(t, objs) {
			for _, c := range slices.Concat(w.pods.Spec.InitContainers, w.pods.Spec.Containers) {
				what := w.id() + " container " + c.Name
				migrates := len(c.Args) > 0 && c.Args[0] == "migrate"
				read := map[string]bool{}
				for _, e := range c.Env {
					if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
						continue
					}
					name := e.ValueFrom.SecretKeyRef.Name
					read[name] = true
					switch {
					case ownerSecrets[name] && !migrates:
						t.Errorf("%s: a service reads the owner role's secret %s; services use %s's", what, name, serviceRole)
					case serviceSecrets[name] && migrates:
						t.Errorf("%s: the migration step reads the service role's secret %s", what, name)
					}
				}
				if !migrates {
					continue
				}
				migrations++
				for name := range ownerSecrets {
					if !read[name] {
						t.Errorf("%s: does not migrate the database of %s", what, name)
					}
				}
				if !slices.Contains(c.Args, "--service-role="+serviceRole) {
					t.Errorf("%s: args %v do not grant --service-role=%s", what, c.Args, serviceRole)
				}
			}
		}
		if migrations != 1 {
			t.Errorf("%d containers run fundd migrate, want one migration step", migrations)
		}
	})
}

// checkClusterRoles: the cluster is owned by the owner role and keeps the
// service role as a plain login role whose password comes from a Secret.
func checkClusterRoles(t *testing.T, o object) {
	t.Helper()
	what := "Cluster/" + o.Metadata.Name
	if b := o.Spec.Bootstrap; b == nil || b.InitDB == nil || b.InitDB.Owner != ownerRole {
		t.Errorf("%s: the database's owner is not %s", what, ownerRole)
	}
	var roles []managedRole
	if o.Spec.Managed != nil {
		roles = o.Spec.Managed.Roles
	}
	i := slices.IndexFunc(roles, func(r managedRole) bool { return r.Name == serviceRole })
	if i < 0 {
		t.Errorf("%s: no managed role %s", what, serviceRole)
		return
	}
	r := roles[i]
	if !r.Login || r.Superuser || r.CreateRole || r.CreateDB || r.BypassRLS || (r.Ensure != "" && r.Ensure != "present") {
		t.Errorf("%s: role %s %+v, want a plain login role", what, serviceRole, r)
	}
	if r.PasswordSecret == nil || r.PasswordSecret.Name != o.Metadata.Name+"-service" {
		t.Errorf("%s: role %s's password is not from Secret %s-service", what, serviceRole, o.Metadata.Name)
	}
}

// The shard map (docs/operations.md): 64 shards on 4 database groups, the
// customers spread over the shards with their rows and orders in their
// shard's group. Every role that reads or writes shards gets every group's
// database in shard-map order (group i's at position i), because
// ledger.ShardMap places shard s by its position in that list: the owners,
// the settlement run (each shard's steps in its own group, the run records
// in group 0's), reconciliation, the gateway (its accounts path routes each
// customer to its shard's group; its --dsn must be group 0's, which holds
// the fund-wide rows), and the migration (every group migrated).
const (
	shardsWant      = "64"
	shardGroupsWant = 4
)

func TestEveryRoleGetsEveryShardGroup(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []object) {
		var groups []string
		for _, o := range objs {
			if o.Kind == "Cluster" {
				groups = append(groups, o.Metadata.Name)
			}
		}
		slices.Sort(groups) // fund-pg-g0, fund-pg-g1, ...: shard-map order
		if len(groups) != shardGroupsWant {
			t.Fatalf("%d Postgres shard groups %v, want %d", len(groups), groups, shardGroupsWant)
		}
		for i, g := range groups {
			if g != fmt.Sprintf("fund-pg-g%d", i) {
				t.Fatalf("shard groups %v: want fund-pg-g0..g%d", groups, shardGroupsWant-1)
			}
		}
		secrets := func(suffix string) string {
			var out []string
			for _, g := range groups {
				out = append(out, "secret:"+g+suffix)
			}
			return strings.Join(out, ",")
		}
		all, first := secrets("-service"), "secret:"+groups[0]+"-service"
		for _, o := range objs {
			if o.Kind == "ConfigMap" && strings.HasPrefix(o.Metadata.Name, "fund-config") && o.Data["FUND_SHARDS"] != shardsWant {
				t.Errorf("ConfigMap/%s: FUND_SHARDS=%q, want %s", o.Metadata.Name, o.Data["FUND_SHARDS"], shardsWant)
			}
		}
		checks := []struct {
			workload, env, want string
			shardsArg           bool
		}{
			{"ledger", "FUND_PG_DSN", all, true},
			{"settle", "FUND_PG_DSN", all, true},
			{"recon", "FUND_PG_DSN", all, true},
			{"gateway", "FUND_LEDGER_DSN", all, true},
			{"gateway", "FUND_PG_DSN", first, true},
			{"migrate", "FUND_MIGRATE_DSN", secrets("-app"), false},
		}
		for _, ck := range checks {
			c, ok := roleContainer(workloads(t, objs), ck.workload)
			if !ok {
				t.Errorf("no workload of app.kubernetes.io/name=%s with a container %s", ck.workload, ck.workload)
				continue
			}
			if got := resolveEnv(c, ck.env); got != ck.want {
				t.Errorf("%s: %s resolves to %q, want %q (every shard group in shard-map order)", ck.workload, ck.env, got, ck.want)
			}
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--dsn") || strings.HasPrefix(a, "--ledger-dsn") {
					t.Errorf("%s: argument %q: the databases come from the environment only", ck.workload, a)
				}
			}
			if ck.shardsArg && !slices.Contains(c.Args, "--shards=$(FUND_SHARDS)") {
				t.Errorf("%s: args %v lack --shards=$(FUND_SHARDS)", ck.workload, c.Args)
			}
		}
	})
}

// roleContainer finds the container named as its role, in the workload
// whose pods carry the role's app.kubernetes.io/name.
func roleContainer(ws []workload, name string) (container, bool) {
	for _, w := range ws {
		if w.pods.Metadata.Labels["app.kubernetes.io/name"] != name {
			continue
		}
		for _, c := range w.pods.Spec.Containers {
			if c.Name == name {
				return c, true
			}
		}
	}
	return container{}, false
}

// resolveEnv expands env var name of c as Kubernetes would, from the
// variables defined before it, with each Secret reference written
// "secret:<name>" (its key aside); "" when it is not defined.
func resolveEnv(c container, name string) string {
	vals := map[string]string{}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			v = "secret:" + e.ValueFrom.SecretKeyRef.Name
		}
		vals[e.Name] = varRef.ReplaceAllStringFunc(v, func(ref string) string {
			if r, ok := vals[varRef.FindStringSubmatch(ref)[1]]; ok {
				return r
			}
			return ref
		})
	}
	return vals[name]
}
