package helmchart

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Objects decodes rendered manifests into objects, in order.
func Objects(ms []Manifest) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, m := range ms {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(m.Content)), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("decode %s: %w", m.Template, err)
			}
			if obj == nil {
				continue
			}
			objs = append(objs, &unstructured.Unstructured{Object: obj})
		}
	}
	return objs, nil
}
