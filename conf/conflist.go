package conf

import (
	"encoding/json"
	"errors"
	"fmt"
)

// FromConfList parses the zonenet entry of a conflist, or a single plugin
// configuration, for tools that work from the files on disk: the runtime
// keys (args, prevResult) are not required.
func FromConfList(data []byte) (*NetConf, error) {
	var list struct {
		CNIVersion string            `json:"cniVersion"`
		Name       string            `json:"name"`
		Type       string            `json:"type"`
		Plugins    []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("not a CNI configuration: %w", err)
	}
	plugin := json.RawMessage(data)
	if list.Type != "zonenet" {
		plugin = nil
		for _, p := range list.Plugins {
			var t struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(p, &t) == nil && t.Type == "zonenet" {
				plugin = p
				break
			}
		}
		if plugin == nil {
			return nil, errors.New(`no plugin of type "zonenet"`)
		}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(plugin, &obj); err != nil {
		return nil, fmt.Errorf("zonenet plugin entry: %w", err)
	}
	for k, v := range map[string]string{"name": list.Name, "cniVersion": list.CNIVersion} {
		if _, ok := obj[k]; !ok && v != "" {
			obj[k], _ = json.Marshal(v)
		}
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return ParseForTeardown(b)
}
