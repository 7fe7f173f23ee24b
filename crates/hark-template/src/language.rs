//! The Liquid language Hark parses: the standard library plus Knock's extra filters.
//!
//! Built on `liquid-core` directly rather than through `liquid::Parser`, because only a
//! `liquid_core` template can be rendered against Hark's own lax runtime
//! ([`crate::runtime::LaxRuntime`]).

use liquid_core::parser::{Language, ParseBlock, ParseFilter, ParseTag};
use liquid_lib::stdlib;

fn tag(language: &mut Language, tag: impl Into<Box<dyn ParseTag>>) {
    let tag = tag.into();
    let name = tag.reflection().tag().to_owned();
    language.tags.register(name, tag);
}

fn block(language: &mut Language, block: impl Into<Box<dyn ParseBlock>>) {
    let block = block.into();
    let name = block.reflection().start_tag().to_owned();
    language.blocks.register(name, block);
}

fn filter(language: &mut Language, filter: impl Into<Box<dyn ParseFilter>>) {
    let filter = filter.into();
    let name = filter.reflection().name().to_owned();
    language.filters.register(name, filter);
}

/// Every tag, block and filter of Liquid's standard library, and `json`.
pub fn knock_liquid() -> Language {
    let mut l = Language::empty();
    tag(&mut l, stdlib::AssignTag);
    tag(&mut l, stdlib::BreakTag);
    tag(&mut l, stdlib::ContinueTag);
    tag(&mut l, stdlib::CycleTag);
    tag(&mut l, stdlib::IncludeTag);
    tag(&mut l, stdlib::IncrementTag);
    tag(&mut l, stdlib::DecrementTag);
    tag(&mut l, stdlib::RenderTag);
    block(&mut l, stdlib::RawBlock);
    block(&mut l, stdlib::IfBlock);
    block(&mut l, stdlib::UnlessBlock);
    block(&mut l, stdlib::IfChangedBlock);
    block(&mut l, stdlib::ForBlock);
    block(&mut l, stdlib::TableRowBlock);
    block(&mut l, stdlib::CommentBlock);
    block(&mut l, stdlib::CaptureBlock);
    block(&mut l, stdlib::CaseBlock);
    filter(&mut l, stdlib::Abs);
    filter(&mut l, stdlib::Append);
    filter(&mut l, stdlib::AtLeast);
    filter(&mut l, stdlib::AtMost);
    filter(&mut l, stdlib::Capitalize);
    filter(&mut l, stdlib::Ceil);
    filter(&mut l, stdlib::Compact);
    filter(&mut l, stdlib::Concat);
    filter(&mut l, stdlib::Date);
    filter(&mut l, stdlib::Default);
    filter(&mut l, stdlib::DividedBy);
    filter(&mut l, stdlib::Downcase);
    filter(&mut l, stdlib::Escape);
    filter(&mut l, stdlib::EscapeOnce);
    filter(&mut l, stdlib::First);
    filter(&mut l, stdlib::Floor);
    filter(&mut l, stdlib::Join);
    filter(&mut l, stdlib::Last);
    filter(&mut l, stdlib::Lstrip);
    filter(&mut l, stdlib::Map);
    filter(&mut l, stdlib::Minus);
    filter(&mut l, stdlib::Modulo);
    filter(&mut l, stdlib::NewlineToBr);
    filter(&mut l, stdlib::Plus);
    filter(&mut l, stdlib::Prepend);
    filter(&mut l, stdlib::Remove);
    filter(&mut l, stdlib::RemoveFirst);
    filter(&mut l, stdlib::Replace);
    filter(&mut l, stdlib::ReplaceFirst);
    filter(&mut l, stdlib::Reverse);
    filter(&mut l, stdlib::Round);
    filter(&mut l, stdlib::Rstrip);
    filter(&mut l, stdlib::Size);
    filter(&mut l, stdlib::Slice);
    filter(&mut l, stdlib::Sort);
    filter(&mut l, stdlib::SortNatural);
    filter(&mut l, stdlib::Split);
    filter(&mut l, stdlib::Strip);
    filter(&mut l, stdlib::StripHtml);
    filter(&mut l, stdlib::StripNewlines);
    filter(&mut l, stdlib::Times);
    filter(&mut l, stdlib::Truncate);
    filter(&mut l, stdlib::TruncateWords);
    filter(&mut l, stdlib::Uniq);
    filter(&mut l, stdlib::Upcase);
    filter(&mut l, stdlib::UrlDecode);
    filter(&mut l, stdlib::UrlEncode);
    filter(&mut l, stdlib::Where);
    filter(&mut l, crate::filters::Json);
    l
}
