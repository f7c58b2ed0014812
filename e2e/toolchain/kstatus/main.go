// Command kstatus prints the kstatus status (sigs.k8s.io/cli-utils/pkg/kstatus/status) of
// Kubernetes objects: Current, InProgress, Failed, Terminating, NotFound or Unknown.
//
// It exists so the tests check the DeepSeekDeployment's status shape with the very library
// Flux, kpt and cli-utils' apply use, instead of a re-implementation of its rules.
//
// Usage:
//
//	kstatus [-o text|json] FILE...      # YAML or JSON, several documents or a List each;
//	kubectl get dsd NAME -o json | kstatus -   # "-" reads standard input
//
// Text output is one line per object: "<kind>/<name> <status> <message>".
// The exit status is 0 when every object was computed, 1 on an error, 2 on bad usage.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// result is one object's status in the JSON output.
type result struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	output := flag.String("o", "text", "output format: text or json")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: kstatus [-o text|json] FILE... (- for stdin)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 || (*output != "text" && *output != "json") {
		flag.Usage()
		os.Exit(2)
	}
	var results []result
	for _, path := range flag.Args() {
		objs, err := readObjects(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %s: %v\n", path, err)
			os.Exit(1)
		}
		for _, obj := range objs {
			res, err := status.Compute(obj)
			if err != nil {
				fmt.Fprintf(os.Stderr, "kstatus: %s %s/%s: %v\n", path, obj.GetKind(), obj.GetName(), err)
				os.Exit(1)
			}
			results = append(results, result{
				Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName(),
				Status: res.Status.String(), Message: res.Message,
			})
		}
	}
	if *output == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			os.Exit(1)
		}
		return
	}
	for _, r := range results {
		fmt.Printf("%s/%s %s %s\n", r.Kind, r.Name, r.Status, r.Message)
	}
}

// readObjects decodes every document of a YAML or JSON stream; a List is flattened.
// Documents go through JSON into unstructured's own decoder, so integers stay int64
// (kstatus reads metadata.generation and status.observedGeneration as int64).
func readObjects(path string) ([]*unstructured.Unstructured, error) {
	var in io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(in), 4096)
	var out []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue // an empty document between "---" separators
		}
		var peek struct {
			Kind  string            `json:"kind"`
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(raw, &peek); err != nil {
			return nil, err
		}
		docs := []json.RawMessage{raw}
		if strings.HasSuffix(peek.Kind, "List") && peek.Items != nil {
			docs = peek.Items
		}
		for _, doc := range docs {
			obj := &unstructured.Unstructured{}
			if err := obj.UnmarshalJSON(doc); err != nil {
				return nil, err
			}
			out = append(out, obj)
		}
	}
}
