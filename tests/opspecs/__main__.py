"""``python -m tests.opspecs``: print how many ops the registry holds and how many tests it makes."""

from tests.opspecs import all_specs, count_tests

if __name__ == "__main__":
    specs = all_specs()
    counts = count_tests(specs)
    width = max(map(len, counts))
    for k, v in counts.items():
        print(f"{k:<{width}}  {v}")
    not_tests = ("ops", "samples", "ops_checked_against_torch", "ops_with_loop_reference")
    print(f"{'tests':<{width}}  {sum(v for k, v in counts.items() if k not in not_tests)}")
    print("ops:", ", ".join(sorted(s.name for s in specs)))
