"""A recording process for the concurrency test: records distinct pages (and some searches) from several
threads, appending each URL to a progress file (fsynced) only after its write returned."""

from __future__ import annotations

import argparse
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from miroenv.web import SearchRequest
from miroenv.web.record import RecordingWeb, RetryPolicy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("snapshot")
    parser.add_argument("pages_url")
    parser.add_argument("search_url")
    parser.add_argument("worker")
    parser.add_argument("count", type=int)
    parser.add_argument("progress")
    args = parser.parse_args()
    web = RecordingWeb(
        args.snapshot,
        capture_date="2025-11-13",
        allow_private=True,
        rate=1000.0,
        burst=100.0,
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05),
        serper_base_url=args.search_url,
        serper_api_key="test-key",
    )
    lock = threading.Lock()
    with open(args.progress, "a", encoding="utf-8") as progress:

        def done(item: str) -> None:
            with lock:
                progress.write(item + "\n")
                progress.flush()
                os.fsync(progress.fileno())

        def record(i: int) -> None:
            url = f"{args.pages_url}/pages/{args.worker}-{i}"
            web.page(url)
            done(url)
            if i % 4 == 0:
                query = f"{args.worker} query {i}"
                web.search(SearchRequest(q=query))
                done("search:" + query)

        with ThreadPoolExecutor(3) as pool:
            list(pool.map(record, range(args.count)))
    web.close()


if __name__ == "__main__":
    main()
