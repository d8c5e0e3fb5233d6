"""``emclip info``: versions, device, run profile and where weights and data are looked for."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="print versions, device, profile and data/weight locations")
    parser.add_argument("--profile", default=None, help="profile to describe (default: $EMCLIP_PROFILE or auto)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from emclip.cli.common import resolve_profile
    from emclip.runtime import config_lines

    print("\n".join(config_lines(args.profile)))
    profile = resolve_profile(args.profile)
    print("Profile fields:")
    for key, value in profile.as_dict().items():
        print(f"  {key:18s}{value}")
    return 0
