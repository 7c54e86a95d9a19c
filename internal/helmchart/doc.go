// Package helmchart loads, renders, lints and packages Berth's Helm chart
// (charts/berth) with the Helm Go SDK. It is used by hack/render, which
// writes manifests/ from the chart and builds release artifacts, and by the
// chart's tests; no Berth binary imports it, so they do not link Helm.
package helmchart
