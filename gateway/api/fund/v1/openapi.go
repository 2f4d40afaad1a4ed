package fundv1

import (
	"embed"
	"encoding/json"
	"fmt"

	"sigs.k8s.io/yaml"
)

//go:embed fund.swagger.json admin.swagger.json openapi.yaml
var swagger embed.FS

// OpenAPI3 returns the OpenAPI 3 document protoc-gen-openapi generated
// from fund.proto and admin.proto together (openapi.yaml), as JSON.
func OpenAPI3() ([]byte, error) {
	raw, err := swagger.ReadFile("openapi.yaml")
	if err != nil {
		return nil, err
	}
	doc, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return doc, nil
}

// OpenAPI returns one OpenAPI v2 document for both services: the generated
// fund.swagger.json with admin.swagger.json's paths and definitions merged
// in (they share the fund.v1 package, so names cannot collide in meaning).
func OpenAPI() ([]byte, error) {
	var merged map[string]any
	for i, name := range []string{"fund.swagger.json", "admin.swagger.json"} {
		raw, err := swagger.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if i == 0 {
			merged = doc
			continue
		}
		for _, section := range []string{"paths", "definitions"} {
			dst, _ := merged[section].(map[string]any)
			if dst == nil {
				dst = map[string]any{}
				merged[section] = dst
			}
			src, _ := doc[section].(map[string]any)
			for k, v := range src {
				dst[k] = v
			}
		}
		if tags, ok := doc["tags"].([]any); ok {
			old, _ := merged["tags"].([]any)
			merged["tags"] = append(old, tags...)
		}
	}
	info, _ := merged["info"].(map[string]any)
	if info == nil {
		info = map[string]any{}
		merged["info"] = info
	}
	info["title"] = "Fund platform API (FundService, AdminService)"
	info["version"] = "v1"
	merged["securityDefinitions"] = map[string]any{
		"bearer": map[string]any{"type": "apiKey", "name": "Authorization", "in": "header",
			"description": "Bearer <JWT> minted by gateway/auth (fundctl token)"},
	}
	merged["security"] = []any{map[string]any{"bearer": []any{}}}
	return json.MarshalIndent(merged, "", "  ")
}
