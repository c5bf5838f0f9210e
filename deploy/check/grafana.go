package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// checkGrafanaDashboards checks that Grafana loads the dashboards: a file
// provider points at a directory the grafana service mounts from
// deploy/compose/grafana/dashboards, and every dashboard there is JSON with
// a uid, a title and queries against a provisioned datasource. Whether the
// metrics they query exist is checked against the running local stack by
// e2e/walkthrough_test.go.
func checkGrafanaDashboards(r *report, root string, p *types.Project, datasources map[string]bool) {
	provDir := filepath.Join(root, "deploy", "compose", "grafana", "provisioning", "dashboards")
	dashDir := filepath.Join(root, "deploy", "compose", "grafana", "dashboards")
	provFiles, _ := filepath.Glob(filepath.Join(provDir, "*.y*ml"))
	if len(provFiles) == 0 {
		start := len(r.problems)
		r.failf(provDir, "no Grafana dashboard provider: the dashboards would not load")
		r.file(provDir, start, "")
		return
	}
	// Where the grafana service mounts the dashboards directory.
	mounted := map[string]bool{}
	if g, ok := p.Services["grafana"]; ok {
		for _, v := range g.Volumes {
			if v.Type == types.VolumeTypeBind && filepath.Clean(v.Source) == dashDir {
				mounted[filepath.Clean(v.Target)] = true
			}
		}
	}
	for _, f := range provFiles {
		start := len(r.problems)
		var cfg struct {
			APIVersion int `json:"apiVersion"`
			Providers  []struct {
				Name    string `json:"name"`
				Type    string `json:"type"`
				Options struct {
					Path string `json:"path"`
				} `json:"options"`
			} `json:"providers"`
		}
		if readYAML(r, f, &cfg) {
			if cfg.APIVersion != 1 {
				r.failf(f, "apiVersion must be 1")
			}
			for _, pr := range cfg.Providers {
				if pr.Type != "file" {
					continue
				}
				if !mounted[filepath.Clean(pr.Options.Path)] {
					r.failf(f, "provider %q reads %s, where the grafana service does not mount deploy/compose/grafana/dashboards", pr.Name, pr.Options.Path)
				}
			}
		}
		r.file(f, start, fmt.Sprintf("%d providers", len(cfg.Providers)))
	}

	files, _ := filepath.Glob(filepath.Join(dashDir, "*.json"))
	if len(files) == 0 {
		start := len(r.problems)
		r.failf(dashDir, "no dashboards")
		r.file(dashDir, start, "")
	}
	uids := map[string]string{}
	for _, f := range files {
		start := len(r.problems)
		queries := checkDashboard(r, f, datasources, uids)
		r.file(f, start, fmt.Sprintf("%d queries", queries))
	}
}

// dashPanel is the part of a Grafana panel the check reads.
type dashPanel struct {
	Title      string          `json:"title"`
	Type       string          `json:"type"`
	Datasource *dashDatasource `json:"datasource"`
	Targets    []struct {
		Expr       string          `json:"expr"`
		Datasource *dashDatasource `json:"datasource"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

type dashDatasource struct {
	UID string `json:"uid"`
}

func checkDashboard(r *report, path string, datasources map[string]bool, uids map[string]string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		r.failf(path, "%v", err)
		return 0
	}
	var d struct {
		UID    string      `json:"uid"`
		Title  string      `json:"title"`
		Panels []dashPanel `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		r.failf(path, "JSON: %v", err)
		return 0
	}
	if d.UID == "" || d.Title == "" {
		r.failf(path, "a dashboard needs a uid and a title")
	}
	if other, ok := uids[d.UID]; ok && d.UID != "" {
		r.failf(path, "uid %q is also the uid of %s", d.UID, filepath.Base(other))
	}
	uids[d.UID] = path
	queries := 0
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				r.failf(path, "panel %q has no query", p.Title)
			}
			if p.Datasource != nil && p.Datasource.UID != "" && !strings.HasPrefix(p.Datasource.UID, "$") && !datasources[p.Datasource.UID] {
				r.failf(path, "panel %q: datasource uid %q is not provisioned", p.Title, p.Datasource.UID)
			}
			for _, t := range p.Targets {
				queries++
				ds := t.Datasource
				if ds == nil {
					ds = p.Datasource
				}
				switch {
				case ds == nil || ds.UID == "":
					r.failf(path, "panel %q: a query without a datasource uid", p.Title)
				case !strings.HasPrefix(ds.UID, "$") && !datasources[ds.UID]:
					r.failf(path, "panel %q: datasource uid %q is not provisioned", p.Title, ds.UID)
				}
				if strings.TrimSpace(t.Expr) == "" {
					r.failf(path, "panel %q: a query without expr", p.Title)
				}
			}
		}
	}
	walk(d.Panels)
	return queries
}
