"""Prints what the official SDK models say of an action: the request's API parameter names
and the response body's tree of keys. The models are the authority on field names.

    .venv/bin/python tests/sdk/tools/model_tree.py ecs DescribeVpcs
    .venv/bin/python tests/sdk/tools/model_tree.py vpc CreateVSwitch
"""
import importlib
import inspect
import re
import sys

PKG = {"ecs": "alibabacloud_ecs20140526", "vpc": "alibabacloud_vpc20160428"}


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def keys_of(cls):
    """(API key, nested model class name or None, is_list), read from from_map's source one
    `if m.get('Key')` block at a time."""
    src = inspect.getsource(cls.from_map)
    blocks = re.split(r"\n\s*if m\.get\(", src)[1:]
    out = []
    for block in blocks:
        key = re.match(r"'([^']+)'\)", block).group(1)
        if any(k == key for k, *_ in out):
            continue
        nested = re.search(r"temp_model = (?:main_models\.)?(\w+)\(\)", block)
        is_list = "for k1 in" in block
        out.append((key, nested.group(1) if nested else None, is_list))
    return out


def tree(models, cls, indent=0, seen=()):
    for key, nested, is_list in keys_of(cls):
        print("  " * indent + key + ("[]" if is_list else ""))
        if nested and nested not in seen:
            tree(models, getattr(models, nested), indent + 1, seen + (nested,))


def main():
    product, action = sys.argv[1], sys.argv[2]
    models = importlib.import_module(PKG[product] + ".models")
    req = getattr(models, action + "Request", None)
    if req is not None:
        print(f"== {action}Request")
        tree(models, req, 1)
    body = getattr(models, action + "ResponseBody")
    print(f"== {action}ResponseBody")
    tree(models, body, 1)


if __name__ == "__main__":
    main()
