"""A client of the cluster as an application is: the application account (MYSQL_USER, no admin privilege, so
read_only binds it) over TCP to whichever node the cluster publishes as primary, keeping its connection until
it breaks. Records each acknowledged id and when. root over a node's socket would not do: MariaDB's root
holds READ ONLY ADMIN and writes through read_only, which no client of the cluster can."""
import threading
import time

import pymysql


class AppWriter(threading.Thread):
    def __init__(self, c, table: str, user: str, password: str, tls_ca: str = "", interval: float = 0.02):
        super().__init__(daemon=True, name="app-writer")
        self.c, self.table, self.user, self.password, self.tls_ca = c, table, user, password, tls_ca
        self.interval = interval
        self.acked = []                  # (id, monotonic time of its acknowledgement)
        self.stop_evt = threading.Event()

    def connect(self):
        st = self.c.status_fast()
        n = next(n for n in st["nodes"] if n["name"] == st["primary"])
        tls = {"ssl_ca": self.tls_ca, "ssl_verify_identity": True} if self.tls_ca else {}
        return pymysql.connect(host=n["host"], port=n["port"], user=self.user, password=self.password,
                               connect_timeout=2, read_timeout=2, write_timeout=2, autocommit=True, **tls)

    def run(self) -> None:
        conn, i = None, 0
        while not self.stop_evt.is_set():
            i += 1
            try:
                if conn is None:
                    conn = self.connect()
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (id) VALUES (%s)", (i,))
                self.acked.append((i, time.monotonic()))
            except Exception:  # noqa: BLE001 - not acknowledged: find the primary again
                conn = None
                self.stop_evt.wait(0.05)
            self.stop_evt.wait(self.interval)

    def stop(self) -> None:
        self.stop_evt.set()
        self.join()

    @property
    def ids(self):
        return [i for i, _ in self.acked]

    def longest_gap(self) -> float:
        times = [t for _, t in self.acked]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)
