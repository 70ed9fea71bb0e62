// The bundled demo: a small shop service on loopback with its own client loop, so its
// handlers keep calling functions with changing arguments, errors and latency, like a
// real service under traffic. Stdlib only.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

type User struct {
	Name    string
	Age     int
	Premium bool
}

type Order struct {
	ID    int64
	Items []string
	Total int
	Owner *User
}

var (
	ErrFrozen   = errors.New("account frozen")
	ErrNotFound = errors.New("no such user")
)

type Store struct {
	mu    sync.Mutex
	users map[string]*User
	next  int64
}

//go:noinline
func (s *Store) Login(username string, attempts int) (*User, error) {
	time.Sleep(time.Duration(200+rand.Intn(800)) * time.Microsecond)
	if attempts > 3 {
		return nil, ErrFrozen
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[username]
	if !ok {
		return nil, ErrNotFound
	}
	return u, nil
}

//go:noinline
func (s *Store) SetInfo(u *User, address string) error {
	if address == "" {
		return fmt.Errorf("set info for %s: %w", u.Name, errors.New("empty address"))
	}
	return nil
}

//go:noinline
func (s *Store) PlaceOrder(u *User, items []string, total int) (Order, error) {
	time.Sleep(time.Duration(rand.Intn(3)) * time.Millisecond)
	if total > 900 && !u.Premium {
		return Order{}, fmt.Errorf("order of %d needs premium", total)
	}
	s.mu.Lock()
	s.next++
	id := s.next
	s.mu.Unlock()
	return Order{ID: id, Items: items, Total: total, Owner: u}, nil
}

//go:noinline
func PriceOf(item string, qty int) int { return (len(item)*37 + 11) % 97 * qty }

func handler(s *Store) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		attempts, _ := strconv.Atoi(r.URL.Query().Get("attempts"))
		u, err := s.Login(r.URL.Query().Get("user"), attempts)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		if err := s.SetInfo(u, r.URL.Query().Get("address")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "hello %s\n", u.Name)
	})
	mux.HandleFunc("/order", func(w http.ResponseWriter, r *http.Request) {
		u, err := s.Login(r.URL.Query().Get("user"), 0)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		items := r.URL.Query()["item"]
		total := 0
		for _, it := range items {
			total += PriceOf(it, 1+len(items))
		}
		o, err := s.PlaceOrder(u, items, total)
		if err != nil {
			http.Error(w, err.Error(), http.StatusPaymentRequired)
			return
		}
		fmt.Fprintf(w, "order %d: %d\n", o.ID, o.Total)
	})
	return mux
}

func clientLoop(addr string, rps int) {
	names := []string{"alice", "bob", "carol", "mallory", "dave"}
	goods := []string{"coffee", "tea", "keyboard", "monitor", "socks", "espresso machine"}
	tick := time.NewTicker(time.Second / time.Duration(rps))
	for range tick.C {
		go func() {
			u := names[rand.Intn(len(names))]
			var url string
			if rand.Intn(2) == 0 {
				addrs := []string{"1 Main St", "", "42 Elm St"}
				url = fmt.Sprintf("http://%s/login?user=%s&attempts=%d&address=%s", addr, u, rand.Intn(6), addrs[rand.Intn(3)])
			} else {
				url = fmt.Sprintf("http://%s/order?user=%s", addr, u)
				for i := 0; i < 1+rand.Intn(4); i++ {
					url += "&item=" + goods[rand.Intn(len(goods))]
				}
			}
			resp, err := http.Get(url)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on (loopback)")
	rps := flag.Int("rps", 50, "requests per second from the built-in client (0: none)")
	flag.Parse()
	s := &Store{users: map[string]*User{
		"alice": {"alice", 34, true}, "bob": {"bob", 17, false}, "carol": {"carol", 52, false}, "dave": {"dave", 29, true},
	}}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("shop: serving on http://%s\n", ln.Addr())
	if *rps > 0 {
		go clientLoop(ln.Addr().String(), *rps)
	}
	log.Fatal(http.Serve(ln, handler(s)))
}
