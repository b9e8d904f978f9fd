"""What a preparation command did, for the command line."""
from dataclasses import dataclass, field


@dataclass
class PrepReport:
    """What a preparation command did.

    Attributes:
        command (str): The command name (sidd-train, ...).
        outputs (dict): Output path -> number of images in it.
        sources (int): Source images (or image pairs, .mat blocks) used.
        skipped (list[str]): One message per skipped source.
        up_to_date (bool): Nothing was written because the outputs were up to date.
    """
    command: str
    outputs: dict = field(default_factory=dict)
    sources: int = 0
    skipped: list = field(default_factory=list)
    up_to_date: bool = False

    def summary(self):
        """A few human-readable lines for the command line."""
        if self.up_to_date:
            return f'{self.command}: up to date, nothing to do: ' + ', '.join(self.outputs)
        lines = [
            f'{self.command}: {self.sources} source(s) -> ' + ', '.join(f'{path} ({count} images)'
                                                                        for path, count in self.outputs.items())
        ]
        if self.skipped:
            lines.append(f'{self.command}: skipped {len(self.skipped)} source(s) (listed above; --skip-bad).')
        return '\n'.join(lines)
