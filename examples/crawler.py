"""A crawler: a goroutine per page, fetching with urllib made cooperative.

    python examples/crawler.py               # crawls a small site it serves
    python examples/crawler.py URL [LIMIT]   # URL's host, at most LIMIT pages

urllib knows nothing of goroutines.  Inside net.cooperative() its plain
socket calls park the goroutine on the netpoller instead of holding an OS
thread, so every fetch in flight waits on the same few threads.  The local
site is served by the standard library's http.server from plain threads,
which cooperative() leaves alone.
"""
import html.parser
import http.server
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request

from goroutine import chan, net, sync

FETCHERS = 8        # fetches in flight at once (a semaphore channel)
SITE_PAGES = 40


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def links_of(base, body):
    p = Links()
    p.feed(body.decode("utf-8", "replace"))
    return [urllib.parse.urljoin(base, h).split("#")[0] for h in p.hrefs]


def crawl(start, limit):
    """{url: bytes or the exception its fetch raised}, for at most limit
    pages reachable from start on start's host."""
    host = urllib.parse.urlsplit(start).netloc
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    seen, pages = {start}, {}
    mu, wg, sem = sync.Mutex(), sync.WaitGroup(), chan(FETCHERS)

    def visit(url):
        sem.send(None)
        try:
            with opener.open(url, timeout=10) as r:
                body = r.read()
        except (urllib.error.URLError, OSError) as e:
            with mu:
                pages[url] = e
            return
        finally:
            sem.recv()
        with mu:
            pages[url] = body
            for link in links_of(url, body):
                if (urllib.parse.urlsplit(link).netloc == host
                        and link not in seen and len(seen) < limit):
                    seen.add(link)
                    wg.go(visit, link)

    with net.cooperative():
        wg.go(visit, start)
        wg.wait()
    return pages


def serve_site(root):
    """SITE_PAGES pages linking as a binary tree, each also to the index
    and one to a page that is not there; served from plain threads."""
    for i in range(SITE_PAGES):
        kids = [k for k in (2 * i + 1, 2 * i + 2) if k < SITE_PAGES]
        body = "".join(f'<a href="page{k}.html">page {k}</a> ' for k in kids)
        body += '<a href="/page0.html#top">home</a>'
        if i == SITE_PAGES - 1:
            body += ' <a href="gone.html">a dead link</a>'
        with open(f"{root}/page{i}.html", "w") as f:
            f.write(f"<html><body><h1>page {i}</h1>{body}</body></html>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=root, **kw)

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def report(pages):
    ok = {u: b for u, b in pages.items() if isinstance(b, bytes)}
    failed = {u: e for u, e in pages.items() if u not in ok}
    print(f"crawled {len(ok)} pages, {sum(map(len, ok.values()))} bytes; "
          f"{len(failed)} failed")
    for u, e in sorted(failed.items()):
        print(f"  {u}: {e}")


def main(argv):
    if len(argv) > 1:
        report(crawl(argv[1], int(argv[2]) if len(argv) > 2 else 100))
        return
    with tempfile.TemporaryDirectory() as root:
        srv = serve_site(root)
        try:
            start = "http://127.0.0.1:%d/page0.html" % srv.server_address[1]
            report(crawl(start, 1000))
        finally:
            srv.shutdown()
            srv.server_close()


if __name__ == "__main__":
    main(sys.argv)
