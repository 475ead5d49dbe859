package sdnctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/yaml"
)

// Output formats of `get`, spelled as kubectl's -o values. The empty format is the table.
const (
	outputTable = ""
	outputWide  = "wide"
	outputYAML  = "yaml"
	outputJSON  = "json"
	outputName  = "name"
)

// outputFormats lists the accepted -o values, for validation and help.
var outputFormats = []string{outputWide, outputYAML, outputJSON, outputName}

// printOptions says how printObjects renders a result.
type printOptions struct {
	// Format is one of the output* constants.
	Format string
	// WithNamespace prepends a NAMESPACE column (kubectl -A on a namespaced kind).
	WithNamespace bool
	// NoHeaders drops the header line of a table.
	NoHeaders bool
	// SingleItem prints one object by itself in yaml/json instead of a List, as kubectl does
	// when exactly one object was asked for by name.
	SingleItem bool
	// ShowManagedFields keeps metadata.managedFields in yaml/json (kubectl drops them).
	ShowManagedFields bool
	// Now is the reference time of the AGE column.
	Now time.Time
}

// printObjects writes objs, all of kind res, to w in the requested format. It is pure: the
// same objects and options always give the same bytes, which is what the golden tests use.
func printObjects(w io.Writer, res resourceInfo, objs []unstructured.Unstructured, o printOptions) error {
	switch o.Format {
	case outputTable, outputWide:
		t, err := buildTable(res, objs, o)
		if err != nil {
			return err
		}
		return t.write(w, o.NoHeaders)
	case outputName:
		for i := range objs {
			if _, err := fmt.Fprintf(w, "%s/%s\n", strings.ToLower(res.GroupKind().String()), objs[i].GetName()); err != nil {
				return err
			}
		}
		return nil
	case outputYAML, outputJSON:
		return printGeneric(w, objs, o)
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: %s",
		o.Format, strings.Join(outputFormats, ","))
}

// printGeneric writes yaml or json the way kubectl does: one object when exactly one was
// named, else a v1 List with an empty resourceVersion; managedFields omitted unless asked for.
func printGeneric(w io.Writer, objs []unstructured.Unstructured, o printOptions) error {
	items := make([]unstructured.Unstructured, len(objs))
	for i := range objs {
		items[i] = *objs[i].DeepCopy()
		if !o.ShowManagedFields {
			items[i].SetManagedFields(nil)
		}
	}
	var data []byte
	var err error
	if o.SingleItem && len(items) == 1 {
		data, err = encode(&items[0], o.Format)
	} else {
		list := &unstructured.UnstructuredList{Object: map[string]interface{}{
			"apiVersion": "v1",
			"kind":       "List",
			"metadata":   map[string]interface{}{"resourceVersion": ""},
		}}
		list.Items = items
		data, err = encode(list, o.Format)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// encode marshals like kubectl's printers: yaml through sigs.k8s.io/yaml, json indented by
// four spaces with a trailing newline.
func encode(obj interface{}, format string) ([]byte, error) {
	if format == outputYAML {
		return yaml.Marshal(obj)
	}
	data, err := json.MarshalIndent(obj, "", "    ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// table is a rendered human-readable result: headers and cells, a nil cell printing as empty.
type table struct {
	headers []string
	rows    [][]interface{}
}

// buildTable computes the columns the API server's CRD table converter serves for res —
// NAME followed by the CRD's printer columns — and prepends NAMESPACE when asked. As in
// kubectl, columns of priority > 0 show only with -o wide.
func buildTable(res resourceInfo, objs []unstructured.Unstructured, o printOptions) (table, error) {
	defs := res.Columns
	if o.Format != outputWide {
		defs = slices.DeleteFunc(slices.Clone(defs), func(d apiextensionsv1.CustomResourceColumnDefinition) bool { return d.Priority > 0 })
	}
	cols, err := compileColumns(defs)
	if err != nil {
		return table{}, err
	}
	withNS := o.WithNamespace && res.Namespaced
	t := table{}
	if withNS {
		t.headers = append(t.headers, "NAMESPACE")
	}
	t.headers = append(t.headers, "NAME")
	for _, c := range cols {
		t.headers = append(t.headers, strings.ToUpper(c.def.Name))
	}
	for i := range objs {
		var row []interface{}
		if withNS {
			row = append(row, objs[i].GetNamespace())
		}
		row = append(row, objs[i].GetName())
		for _, c := range cols {
			row = append(row, c.cell(objs[i].Object, o.Now))
		}
		t.rows = append(t.rows, row)
	}
	return t, nil
}

// write prints the table through a tabwriter configured as kubectl's (min width 6, tab width
// 4, padding 3, spaces). Like kubectl, an empty table prints nothing, not even headers.
func (t table) write(w io.Writer, noHeaders bool) error {
	if len(t.rows) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
	if !noHeaders {
		fmt.Fprintln(tw, strings.Join(t.headers, "\t"))
	}
	for _, row := range t.rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = formatCell(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// terminalEscaper neutralises terminal control sequences in cell text, as kubectl does.
var terminalEscaper = strings.NewReplacer("\x1b", "^[", "\r", `\r`)

// formatCell renders one cell as kubectl's table printer does: nil is empty, a string is cut
// at its first line break (marked "..."), anything else is printed with fmt.
func formatCell(c interface{}) string {
	switch v := c.(type) {
	case nil:
		return ""
	case string:
		if i := strings.IndexAny(v, "\f\n\r"); i >= 0 {
			return terminalEscaper.Replace(v[:i]) + "..."
		}
		return terminalEscaper.Replace(v)
	default:
		return terminalEscaper.Replace(fmt.Sprint(v))
	}
}

// column is one CRD printer column with its compiled JSONPath.
type column struct {
	def  apiextensionsv1.CustomResourceColumnDefinition
	path *jsonpath.JSONPath
}

func compileColumns(defs []apiextensionsv1.CustomResourceColumnDefinition) ([]column, error) {
	cols := make([]column, 0, len(defs))
	for _, d := range defs {
		p := jsonpath.New(d.Name)
		if err := p.Parse("{" + d.JSONPath + "}"); err != nil {
			return nil, fmt.Errorf("unrecognized column definition %q: %w", d.JSONPath, err)
		}
		p.AllowMissingKeys(true)
		cols = append(cols, column{def: d, path: p})
	}
	return cols, nil
}

// cell evaluates the column on one object with the API server's rules: a missing field is a
// nil cell; for string columns a scalar prints as text and a list or map as compact JSON
// (so egress IPs show as ["10.0.0.5","10.0.0.6"] and an explicit empty list as []); typed
// columns keep the JSON value; dates become an age relative to now.
func (c column) cell(obj map[string]interface{}, now time.Time) interface{} {
	results, err := c.path.FindResults(obj)
	if err != nil || len(results) == 0 || len(results[0]) == 0 {
		return nil
	}
	value := results[0][0].Interface()
	if c.def.Type == "string" {
		var buf bytes.Buffer
		if err := c.path.PrintResults(&buf, []reflect.Value{reflect.ValueOf(value)}); err != nil {
			return nil
		}
		return buf.String()
	}
	return typedCell(c.def.Type, value, now)
}

// typedCell converts a JSON value for an integer, number, boolean or date column; a value of
// the wrong type gives a nil cell.
func typedCell(typ string, value interface{}, now time.Time) interface{} {
	switch v := value.(type) {
	case int64:
		switch typ {
		case "integer":
			return v
		case "number":
			return float64(v)
		}
	case float64:
		switch typ {
		case "integer":
			return int64(v)
		case "number":
			return v
		}
	case bool:
		if typ == "boolean" {
			return v
		}
	case string:
		if typ == "date" {
			return ageCell(v, now)
		}
	}
	return nil
}

// ageCell renders a creationTimestamp as kubectl's AGE ("5m", "3d2h").
func ageCell(ts string, now time.Time) string {
	var t metav1.Time
	if err := t.UnmarshalQueryParameter(ts); err != nil {
		return "<invalid>"
	}
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}
