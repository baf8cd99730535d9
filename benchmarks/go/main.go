// The Go side of goroutine's benchmarks: the same workloads as
// benchmarks/workloads.py, so the runner can put Go itself in the table.
// Prints one JSON object: {"value": ..., "unit": ...}.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

func perOp(d time.Duration, n int) (float64, string) {
	return float64(d.Nanoseconds()) / float64(n), "ns/op"
}

func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func pingpong(n int) (float64, string) {
	a, b := make(chan int), make(chan int)
	go func() {
		for i := 0; i < n; i++ {
			b <- <-a
		}
	}()
	t := time.Now()
	for i := 0; i < n; i++ {
		a <- i
		<-b
	}
	return perOp(time.Since(t), n)
}

func buffered(n int) (float64, string) {
	c := make(chan int, 128)
	t := time.Now()
	go func() {
		for i := 0; i < n; i++ {
			c <- i
		}
		close(c)
	}()
	for range c {
	}
	return perOp(time.Since(t), n)
}

func mpmc(n int) (float64, string) {
	c := make(chan int, 16)
	per := n / 4
	var p, q sync.WaitGroup
	t := time.Now()
	for k := 0; k < 4; k++ {
		p.Add(1)
		q.Add(1)
		go func() {
			defer p.Done()
			for i := 0; i < per; i++ {
				c <- i
			}
		}()
		go func() {
			defer q.Done()
			for range c {
			}
		}()
	}
	p.Wait()
	close(c)
	q.Wait()
	return perOp(time.Since(t), n)
}

func selectK(n, k int) (float64, string) {
	per := n / k
	cs := make([]chan int, k)
	for i := range cs {
		cs[i] = make(chan int)
		go func(c chan int) {
			for j := 0; j < per; j++ {
				c <- j
			}
		}(cs[i])
	}
	t := time.Now()
	for i := 0; i < per*k; i++ {
		if k == 2 {
			select {
			case <-cs[0]:
			case <-cs[1]:
			}
		} else {
			select {
			case <-cs[0]:
			case <-cs[1]:
			case <-cs[2]:
			case <-cs[3]:
			case <-cs[4]:
			case <-cs[5]:
			case <-cs[6]:
			case <-cs[7]:
			}
		}
	}
	return perOp(time.Since(t), per*k)
}

func spawn(n int) (float64, string) {
	t := time.Now()
	for b := 0; b < n/100; b++ {
		var wg sync.WaitGroup
		for i := 0; i < 100; i++ {
			wg.Add(1)
			go func() { wg.Done() }()
		}
		wg.Wait()
	}
	return perOp(time.Since(t), n)
}

func daisy(n int) (float64, string) {
	leftmost := make(chan int)
	left := leftmost
	t := time.Now()
	for i := 0; i < n; i++ {
		right := make(chan int)
		go func(l, r chan int) { l <- 1 + <-r }(left, right)
		left = right
	}
	go func(c chan int) { c <- 1 }(left)
	<-leftmost
	return perOp(time.Since(t), n)
}

func parked(n int) (float64, string) {
	gate := make(chan int)
	runtime.GC()
	base := rss()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { wg.Done(); <-gate }()
	}
	wg.Wait()
	used := rss() - base
	close(gate)
	return float64(used) / float64(n), "B/unit"
}

func sieve(n int) (float64, string) {
	gen := func(ch chan<- int) {
		for i := 2; ; i++ {
			ch <- i
		}
	}
	filter := func(in <-chan int, out chan<- int, p int) {
		for {
			i := <-in
			if i%p != 0 {
				out <- i
			}
		}
	}
	ch := make(chan int)
	go gen(ch)
	t := time.Now()
	for i := 0; i < n; i++ {
		p := <-ch
		ch1 := make(chan int)
		go filter(ch, ch1, p)
		ch = ch1
	}
	return perOp(time.Since(t), n)
}

func ctxCancel(n int) (float64, string) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { <-ctx.Done(); wg.Done() }()
	}
	time.Sleep(50 * time.Millisecond)
	t := time.Now()
	cancel()
	wg.Wait()
	return perOp(time.Since(t), n)
}

func ctxTimeout(n int) (float64, string) {
	bg := context.Background()
	t := time.Now()
	for i := 0; i < n; i++ {
		_, cancel := context.WithTimeout(bg, 10*time.Second)
		cancel()
	}
	return perOp(time.Since(t), n)
}

func timers(n int) (float64, string) {
	late := make([]float64, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			time.Sleep(time.Duration(rand.Float64() * 0.5 * float64(time.Second)))
			t0 := time.Now()
			time.Sleep(10 * time.Millisecond)
			late[i] = float64(time.Since(t0)-10*time.Millisecond) / 1e6
		}(i)
	}
	wg.Wait()
	sort.Float64s(late)
	return late[n/2], "ms late"
}

func mutex(n int) (float64, string) {
	var m sync.Mutex
	c := 0
	per := n / 8
	var wg sync.WaitGroup
	t := time.Now()
	for k := 0; k < 8; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				m.Lock()
				c++
				m.Unlock()
			}
		}()
	}
	wg.Wait()
	return perOp(time.Since(t), per*8)
}

func main() {
	w := flag.String("w", "", "workload")
	n := flag.Int("n", 1000, "size")
	flag.Parse()
	fns := map[string]func(int) (float64, string){
		"pingpong": pingpong, "buffered_1p1c": buffered, "mpmc_4x4": mpmc,
		"select_2": func(n int) (float64, string) { return selectK(n, 2) },
		"select_8": func(n int) (float64, string) { return selectK(n, 8) },
		"spawn":    spawn, "daisy_chain": daisy, "parked_memory": parked,
		"prime_sieve": sieve, "ctx_cancel": ctxCancel, "timers": timers,
		"ctx_timeout": ctxTimeout,
		"mutex_8":     mutex,
	}
	f, ok := fns[*w]
	if !ok {
		fmt.Println(`{"error": "no such workload"}`)
		os.Exit(3)
	}
	v, unit := f(*n)
	fmt.Printf("{\"value\": %g, \"unit\": %q}\n", v, unit)
}
