package api

import (
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// openAPI makes the OpenAPI 3.0 document of the route table.
func openAPI(table []route) map[string]any {
	g := &schemaGen{schemas: map[string]any{}}
	paths := map[string]map[string]any{}
	errResp := map[string]any{
		"description": "An error: {\"error\": \"what is wrong and what to do\"}",
		"content":     jsonContent(g.schema(reflect.TypeOf(errorBody{}))),
	}
	for _, rt := range table {
		p := Prefix + rt.path
		if paths[p] == nil {
			paths[p] = map[string]any{}
		}
		op := map[string]any{
			"operationId":    rt.op,
			"summary":        rt.summary,
			"x-cairn-access": rt.access.String(),
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
			params = append(params, map[string]any{
				"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"},
			})
		}
		if params != nil {
			op["parameters"] = params
		}
		switch rt.access {
		case accessPublic:
			op["security"] = []any{}
		case accessJoinToken:
			op["security"] = []any{map[string]any{"joinToken": []string{}}}
		case accessNodeCert:
			op["security"] = []any{}
			op["description"] = "Mutual TLS: the caller presents the certificate it got at join, issued by the engine CA for node:{id}."
		case accessAdmin:
			op["description"] = "Admins only."
		case accessUser:
			op["description"] = "Any user; readonly users only GET."
		case accessOwn:
			op["description"] = "Any user, readonly ones too: the caller's own credentials."
		}
		if rt.request != nil {
			op["requestBody"] = map[string]any{
				"required": true,
				"content":  jsonContent(g.schema(reflect.TypeOf(rt.request))),
			}
		}
		status := rt.status
		if status == 0 {
			status = http.StatusOK
		}
		ok := map[string]any{"description": http.StatusText(status)}
		switch {
		case rt.response == nil:
		case reflect.TypeOf(rt.response) == reflect.TypeOf(pemFile{}):
			ok["content"] = map[string]any{"application/x-pem-file": map[string]any{"schema": map[string]any{"type": "string"}}}
		case rt.list:
			ok["content"] = jsonContent(map[string]any{
				"type":       "object",
				"properties": map[string]any{"items": map[string]any{"type": "array", "items": g.schema(reflect.TypeOf(rt.response))}},
				"required":   []string{"items"},
			})
		default:
			ok["content"] = jsonContent(g.schema(reflect.TypeOf(rt.response)))
		}
		op["responses"] = map[string]any{strconv.Itoa(status): ok, "default": errResp}
		paths[p][strings.ToLower(rt.method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "Cairn API",
			"version":     "v1",
			"description": "The API of a Cairn engine. Within v1, changes only add.",
		},
		"servers":  []any{map[string]any{"url": "/"}},
		"paths":    paths,
		"security": []any{map[string]any{"basic": []string{}}, map[string]any{"bearer": []string{}}},
		"components": map[string]any{
			"schemas": g.schemas,
			"securitySchemes": map[string]any{
				"basic":     map[string]any{"type": "http", "scheme": "basic", "description": "User name and password."},
				"bearer":    map[string]any{"type": "http", "scheme": "bearer", "description": "An API token (cairn_...) from POST /api/v1/tokens or `cairn login`."},
				"joinToken": map[string]any{"type": "http", "scheme": "bearer", "description": "The engine's join token, from a compute node's kernel arguments."},
			},
		},
	}
}

var pathParam = regexp.MustCompile(`\{([a-zA-Z_][a-zA-Z0-9_]*)\.*\}`)

func jsonContent(schema any) map[string]any {
	return map[string]any{"application/json": map[string]any{"schema": schema}}
}

// schemaGen turns Go types into OpenAPI schemas, named structs into components.
type schemaGen struct {
	schemas map[string]any
}

var timeType = reflect.TypeOf(time.Time{})

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	if t == timeType {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32:
		return map[string]any{"type": "integer", "format": "int32"}
	case reflect.Int64:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "format": "int64", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		name := schemaName(t)
		if name == "" {
			return g.object(t)
		}
		if _, ok := g.schemas[name]; !ok {
			g.schemas[name] = map[string]any{} // a placeholder stops recursion
			g.schemas[name] = g.object(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	default:
		return map[string]any{}
	}
}

// object is the schema of a struct's JSON fields, embedded structs flattened.
func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	g.fields(t, props)
	return map[string]any{"type": "object", "properties": props}
}

func (g *schemaGen) fields(t reflect.Type, props map[string]any) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			g.fields(f.Type, props)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.schema(f.Type)
	}
}

// schemaName is the component name of a named struct: its package's last element
// and its name, capitalised ("EngineNode", "ApiHealthResponse").
func schemaName(t reflect.Type) string {
	if t.Name() == "" {
		return ""
	}
	pkg := t.PkgPath()
	if i := strings.LastIndex(pkg, "/"); i >= 0 {
		pkg = pkg[i+1:]
	}
	name := t.Name()
	if pkg == "engine" || pkg == "service" {
		pkg = ""
	}
	return strings.ToUpper(pkg[:min(1, len(pkg))]) + pkg[min(1, len(pkg)):] + strings.ToUpper(name[:1]) + name[1:]
}
