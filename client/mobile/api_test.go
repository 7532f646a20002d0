package mobile

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"sort"
	"strings"
	"testing"
)

// exportedAPI parses the package's own files (tests aside) and returns
// them with the names of its exported struct and interface types.
func exportedAPI(t *testing.T) (*token.FileSet, []*ast.File, map[string]bool, map[string]bool) {
	t.Helper()
	fset := token.NewFileSet()
	names, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	structs, ifaces := map[string]bool{}, map[string]bool{}
	for _, n := range names {
		if !strings.HasSuffix(n.Name(), ".go") || strings.HasSuffix(n.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n.Name(), nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, s := range g.Specs {
				ts := s.(*ast.TypeSpec)
				if !ts.Name.IsExported() {
					continue
				}
				switch ts.Type.(type) {
				case *ast.StructType:
					structs[ts.Name.Name] = true
				case *ast.InterfaceType:
					ifaces[ts.Name.Name] = true
				default:
					t.Errorf("%s: exported type %s is neither a struct nor an interface", fset.Position(ts.Pos()), ts.Name.Name)
				}
			}
		}
	}
	return fset, files, structs, ifaces
}

// TestAPIIsBindable checks every exported signature and field against
// what gobind binds: the basic types, []byte, error, pointers to this
// package's structs and this package's interfaces; at most one result
// besides an error. The gobind step of .ci/run checks the same on
// gobind's own output; this test says it without the tool, and names the
// declaration.
func TestAPIIsBindable(t *testing.T) {
	fset, files, structs, ifaces := exportedAPI(t)
	basic := map[string]bool{"string": true, "bool": true, "int": true, "int8": true, "int16": true, "int32": true,
		"int64": true, "float32": true, "float64": true, "error": true}
	bindable := func(e ast.Expr) bool {
		switch e := e.(type) {
		case *ast.Ident:
			return basic[e.Name] || ifaces[e.Name]
		case *ast.StarExpr:
			id, ok := e.X.(*ast.Ident)
			return ok && structs[id.Name]
		case *ast.ArrayType:
			id, ok := e.Elt.(*ast.Ident)
			return e.Len == nil && ok && id.Name == "byte"
		}
		return false
	}
	typeString := types.ExprString
	checkFunc := func(name string, ft *ast.FuncType, pos token.Pos) {
		for _, p := range ft.Params.List {
			if !bindable(p.Type) {
				t.Errorf("%s: %s takes a %s, which gobind cannot bind", fset.Position(pos), name, typeString(p.Type))
			}
		}
		var results []ast.Expr
		if ft.Results != nil {
			for _, r := range ft.Results.List {
				for range max(1, len(r.Names)) {
					results = append(results, r.Type)
				}
			}
		}
		for i, r := range results {
			if !bindable(r) {
				t.Errorf("%s: %s returns a %s, which gobind cannot bind", fset.Position(pos), name, typeString(r))
			}
			if id, ok := r.(*ast.Ident); i < len(results)-1 && ok && id.Name == "error" {
				t.Errorf("%s: %s returns an error before its last result", fset.Position(pos), name)
			}
		}
		if len(results) > 2 || len(results) == 2 && fmt.Sprint(results[1]) != "error" {
			t.Errorf("%s: %s returns %d results; gobind binds one, and an error", fset.Position(pos), name, len(results))
		}
	}
	n := 0
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				name := d.Name.Name
				if d.Recv != nil {
					rt := d.Recv.List[0].Type
					if s, ok := rt.(*ast.StarExpr); ok {
						rt = s.X
					}
					if !rt.(*ast.Ident).IsExported() {
						continue
					}
					name = rt.(*ast.Ident).Name + "." + name
				}
				checkFunc(name, d.Type, d.Pos())
				n++
			case *ast.GenDecl:
				for _, s := range d.Specs {
					ts, ok := s.(*ast.TypeSpec)
					if !ok || !ts.Name.IsExported() {
						continue
					}
					switch tt := ts.Type.(type) {
					case *ast.StructType:
						for _, fl := range tt.Fields.List {
							for _, fn := range fl.Names {
								if fn.IsExported() && !bindable(fl.Type) {
									t.Errorf("%s: field %s.%s is a %s, which gobind cannot bind", fset.Position(fn.Pos()), ts.Name.Name, fn.Name, typeString(fl.Type))
								}
								n++
							}
						}
					case *ast.InterfaceType:
						if len(tt.Methods.List) != 1 {
							t.Errorf("%s: listener %s has %d methods; one lets a Kotlin lambda implement it", fset.Position(ts.Pos()), ts.Name.Name, len(tt.Methods.List))
						}
						for _, m := range tt.Methods.List {
							ft, ok := m.Type.(*ast.FuncType)
							if !ok {
								t.Errorf("%s: interface %s embeds a type", fset.Position(m.Pos()), ts.Name.Name)
								continue
							}
							checkFunc(ts.Name.Name+"."+m.Names[0].Name, ft, m.Pos())
							n++
						}
					}
				}
			}
		}
	}
	if n < 50 {
		t.Fatalf("checked only %d declarations: the parse missed the package", n)
	}
}

// TestAPIIsDocumented checks that every exported name has a doc comment,
// fields and interface methods included: gobind copies them into the
// Javadoc and the Objective-C header, where an app's developer reads
// them.
func TestAPIIsDocumented(t *testing.T) {
	fset, files, _, _ := exportedAPI(t)
	var missing []string
	miss := func(pos token.Pos, what string) {
		missing = append(missing, fmt.Sprintf("%s: %s", fset.Position(pos), what))
	}
	if !hasPackageDoc(files) {
		t.Error("the package has no package comment")
	}
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Name.IsExported() && d.Doc == nil {
					miss(d.Pos(), d.Name.Name)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						if s.Doc == nil && d.Doc == nil {
							miss(s.Pos(), s.Name.Name)
						}
						switch tt := s.Type.(type) {
						case *ast.StructType:
							for _, fl := range tt.Fields.List {
								for _, fn := range fl.Names {
									if fn.IsExported() && fl.Doc == nil {
										miss(fn.Pos(), s.Name.Name+"."+fn.Name)
									}
								}
							}
						case *ast.InterfaceType:
							for _, m := range tt.Methods.List {
								if m.Doc == nil {
									miss(m.Pos(), s.Name.Name+"."+m.Names[0].Name)
								}
							}
						}
					case *ast.ValueSpec:
						for _, vn := range s.Names {
							// A constant in a documented group may say what it
							// is in a line comment.
							if vn.IsExported() && s.Doc == nil && s.Comment == nil && (d.Doc == nil || len(d.Specs) == 1) {
								miss(vn.Pos(), vn.Name)
							}
						}
					}
				}
			}
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("%s has no doc comment", m)
	}
}

func hasPackageDoc(files []*ast.File) bool {
	for _, f := range files {
		if f.Doc != nil {
			return true
		}
	}
	return false
}
