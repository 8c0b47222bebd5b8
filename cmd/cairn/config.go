package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// config is what `cairn login` saves: the engine's URL, its CA and an API token.
type config struct {
	URL     string `json:"url"`
	User    string `json:"user,omitempty"`
	CAPEM   string `json:"ca_pem"`
	Token   string `json:"token"`
	TokenID string `json:"token_id,omitempty"`
}

// configPath is --config, or $XDG_CONFIG_HOME/cairn/config.json, or
// ~/.config/cairn/config.json.
func configPath(flag string, getenv func(string) string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "cairn", "config.json"), nil
	}
	home := getenv("HOME")
	if home == "" {
		return "", errors.New("no config path: set HOME or XDG_CONFIG_HOME, or pass --config")
	}
	return filepath.Join(home, ".config", "cairn", "config.json"), nil
}

// loadConfig reads the config; a missing file is an empty config.
func loadConfig(path string) (config, error) {
	var c config
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("read config %s: %w; log in again to rewrite it", path, err)
	}
	return c, nil
}

// saveConfig writes the config readable by its owner only, replacing the old one in
// one step.
func saveConfig(path string, c config) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	f, err := os.CreateTemp(dir, ".config-*.json")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	return nil
}
