"""Writers of the generated datasets that ship with the project, each behind `write_once`.

- `reviews`: the review-sentiment CSVs of `data=text_csv` / `data=hf_dataset`;
- `instructions`: the instruction tasks of `data=instruct` (dates, units, fields, sums);
- `real_qa` (with its converters in `qa_formats`): real question sets read from installed
  packages (`data=asdiv`, `quartz`, `logiqa`, `nq_open`, `boolq`).

Each is a `data.write_files` partial: a datamodule calls it in `prepare_data`, and it writes
its files into data/generated/ once (`write_once.write_once`).
"""
