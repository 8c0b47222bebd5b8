package main

import (
	"fmt"

	"github.com/cairn-os/cairn/supervisor/vnet"
	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// ChainRules is how many rules one chain of table inet cairn has.
type ChainRules struct {
	Chain string
	Rules int
}

// nftIn opens an nftables connection to the namespace called ns; close the handle
// after use.
func nftIn(ns string) (*nftables.Conn, netns.NsHandle, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, 0, fmt.Errorf("open namespace %s: %w", ns, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		h.Close()
		return nil, 0, fmt.Errorf("nftables in %s: %w", ns, err)
	}
	return c, h, nil
}

// countRules returns the rules of table inet cairn in ns, chain by chain in the
// kernel's order; no table is an error.
func countRules(ns string) ([]ChainRules, error) {
	c, h, err := nftIn(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	t, err := c.ListTableOfFamily(vnet.TableName, nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("table inet %s in %s: %w", vnet.TableName, ns, err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list chains in %s: %w", ns, err)
	}
	var out []ChainRules
	for _, ch := range chains {
		if ch.Table.Name != t.Name {
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s in %s: %w", ch.Name, ns, err)
		}
		out = append(out, ChainRules{Chain: ch.Name, Rules: len(rules)})
	}
	return out, nil
}

// deleteTable removes table inet cairn from ns, so that no netfilter rule (nor the
// connection tracking that its NAT chains switch on) sees the traffic; the table
// being already gone is not an error.
func deleteTable(ns string) error {
	c, h, err := nftIn(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("list tables in %s: %w", ns, err)
	}
	for _, t := range tables {
		if t.Name == vnet.TableName {
			c.DelTable(t)
			if err := c.Flush(); err != nil {
				return fmt.Errorf("delete table inet %s in %s: %w", vnet.TableName, ns, err)
			}
		}
	}
	return nil
}

// hasTable reports whether ns has any nftables table.
func hasTable(ns string) (bool, error) {
	c, h, err := nftIn(ns)
	if err != nil {
		return false, err
	}
	defer h.Close()
	tables, err := c.ListTables()
	if err != nil {
		return false, fmt.Errorf("list tables in %s: %w", ns, err)
	}
	return len(tables) > 0, nil
}

func total(rules []ChainRules) int {
	n := 0
	for _, r := range rules {
		n += r.Rules
	}
	return n
}
