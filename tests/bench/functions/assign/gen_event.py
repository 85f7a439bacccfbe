"""Writes event.json next to this file: the assignment benchmark's fixed request (one user,
20 experiments with 2–4 weighted variants, some with an audience, and the user's attributes;
~3.5 KB of compact JSON). Seeded, so the file is the same on every run: `python3 gen_event.py`."""
import json, os, random

WORDS = ("checkout", "search", "onboarding", "pricing", "banner", "recommend", "email", "cart",
         "landing", "ranking", "signup", "promo", "layout", "shipping", "reviews", "upsell")
NAMES = ("control", "treatment", "variant_b", "variant_c")


def main():
    rnd = random.Random(4)
    experiments = []
    for i in range(20):
        n = rnd.choice((2, 2, 3, 4))
        exp = {"key": f"exp-{i:02d}-{rnd.choice(WORDS)}-{rnd.choice(WORDS)}",
               "salt": "%016x" % rnd.getrandbits(64),
               "variants": [{"name": NAMES[j], "weight": rnd.choice((10, 20, 25, 50, 100))} for j in range(n)]}
        if i % 4 == 3:
            # every other audience leaves this user out: both paths of the handler run
            exp["audience"] = {"country": ["DE", "FR", "NL"] if i % 8 == 3 else ["US", "GB"],
                               "platform": ["ios", "android", "web"]}
        experiments.append(exp)
    event = {"user_id": "user-%012x" % rnd.getrandbits(48), "experiments": experiments,
             "attributes": {"country": "DE", "platform": "web", "locale": "de-DE", "plan": "pro",
                            "signup_days": 412, "app_version": "5.12.3", "beta": False,
                            "segments": ["returning", "high-value", "newsletter"]}}
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "event.json"), "w") as f:
        json.dump(event, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
