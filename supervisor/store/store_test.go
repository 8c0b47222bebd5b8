package store

import (
	"errors"
	"path/filepath"
	"testing"
)

type item struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func TestCRUD(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()

	var got item
	if err := s.Get("items", "a", &got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get from missing bucket: %v, want ErrNotFound", err)
	}
	for _, it := range []item{{"b", 2}, {"a", 1}, {"c", 3}} {
		if err := s.Put("items", it.Name, it); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Get("items", "b", &got); err != nil || got != (item{"b", 2}) {
		t.Fatalf("get b = %+v, %v", got, err)
	}
	if err := s.Put("items", "b", item{"b", 20}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("items", "c"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("items", "never"); err != nil {
		t.Fatalf("delete of a missing key: %v", err)
	}
	all, err := List[item](s, "items")
	if err != nil {
		t.Fatal(err)
	}
	want := []item{{"a", 1}, {"b", 20}}
	if len(all) != len(want) || all[0] != want[0] || all[1] != want[1] {
		t.Fatalf("list = %+v, want %+v", all, want)
	}
	empty, err := List[item](s, "nothing")
	if err != nil || empty == nil || len(empty) != 0 {
		t.Fatalf("list of a missing bucket = %#v, %v; want an empty list", empty, err)
	}
}

func TestUpdateRollsBackOnError(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	if err := s.Put("items", "a", item{"a", 1}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := s.Update(func(tx *Tx) error {
		if err := tx.Put("items", "a", item{"a", 99}); err != nil {
			return err
		}
		if err := tx.Put("items", "b", item{"b", 2}); err != nil {
			return err
		}
		if err := tx.Delete("items", "a"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update = %v, want boom", err)
	}
	var got item
	if err := s.Get("items", "a", &got); err != nil || got.Count != 1 {
		t.Fatalf("after rollback a = %+v, %v; want the old value", got, err)
	}
	if err := s.Get("items", "b", &got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after rollback b: %v, want ErrNotFound", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Update(func(tx *Tx) error {
		return tx.Put("items", "kept", item{"kept", 7})
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got item
	if err := s.Get("items", "kept", &got); err != nil || got.Count != 7 {
		t.Fatalf("after reopen = %+v, %v", got, err)
	}
}

func TestSecondOpenFailsInsteadOfHanging(t *testing.T) {
	s, path := openTemp(t)
	defer s.Close()
	if s2, err := Open(path); err == nil {
		s2.Close()
		t.Fatal("a second open of a locked store succeeded")
	}
}
