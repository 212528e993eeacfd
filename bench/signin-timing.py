#!/usr/bin/env python3
"""Answer times of the password grant for a wrong password and for an unknown account.

Usage: python3 bench/signin-timing.py BASE_URL LOGIN [ROUNDS]
  BASE_URL  a running userorg (e.g. http://127.0.0.1:9000), started with
            USERORG__SIGNIN__BRUTE_FORCE__ENABLED=false so the account never locks
            (and rate limits raised, USERORG__RATE_LIMITS__PER_CLIENT_PER_MINUTE=100000)
  LOGIN     the email of a user that has a password
Both kinds of attempt are alternated and their medians printed: they should not differ by more
than the spread of either (the account's existence must not show in the time of the answer).
"""
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

base, login = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 30
url = f"{base}/auth/realms/sunbird/protocol/openid-connect/token"


def grant(username):
    data = urllib.parse.urlencode({"grant_type": "password", "client_id": "portal",
                                   "username": username, "password": "Wrong#pass1"}).encode()
    started = time.perf_counter()
    try:
        urllib.request.urlopen(url, data)
    except urllib.error.HTTPError as error:
        error.read()
    return (time.perf_counter() - started) * 1000


for _ in range(3):
    grant(login)
    grant("warmup@example.org")
wrong, unknown = [], []
for i in range(rounds):
    wrong.append(grant(login))
    unknown.append(grant(f"nobody{i}@example.org"))
for name, times in (("wrong password", wrong), ("unknown account", unknown)):
    print(f"{name:16} median {statistics.median(times):6.1f} ms  "
          f"min {min(times):6.1f}  max {max(times):6.1f}  ({rounds} requests)")
